FROM alpine
COPY "with space" /dst/
ADD a\ b /x
