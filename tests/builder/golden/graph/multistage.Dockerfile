# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE} AS base
ENV APP=/app
WORKDIR $APP

FROM base AS build
ARG VERSION=1.2
COPY --chown=1:1 src/ ./src/
RUN make VERSION=$VERSION

FROM busybox AS docs
RUN mkdocs build

FROM scratch
COPY --from=build /app/out /bin/app
COPY --from=busybox /bin/busybox /bin/sh
ENTRYPOINT ["/bin/app"]
EXPOSE 8080 9000-9001/udp
LABEL org.example.version=1.2
