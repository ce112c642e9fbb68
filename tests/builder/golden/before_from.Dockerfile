RUN echo before
FROM alpine
