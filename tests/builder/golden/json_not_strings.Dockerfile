FROM alpine
ENTRYPOINT ["ok", 1]
