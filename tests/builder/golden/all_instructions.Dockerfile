# syntax=docker/dockerfile:1
ARG BASE=alpine
ARG A B=2
FROM --platform=linux/arm64 $BASE AS Builder
RUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=tok --network=none --security=insecure make
CMD ["run", "--fast"]
ENTRYPOINT /bin/sh -c
ENV a=b c="d e" f=g\ h
ENV LEGACY value with spaces
LABEL org.opencontainers.image.title="x y" v=1
EXPOSE 80 443/tcp 8000-8010/udp $PORT
VOLUME ["/data", "/logs"]
VOLUME /a /b
USER app:app
WORKDIR /src
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=1m30s --start-period=500ms --start-interval=2s --retries=5 CMD ["curl", "-f", "http://localhost/"]
ONBUILD COPY . /app
MAINTAINER someone@example.com
FROM scratch
COPY --from=builder --chown=1000:1000 --chmod=0755 --link --parents --exclude=*.md --exclude=tmp a b /dst/
ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d --keep-git-dir=true --link=false https://example.com/x.tar.gz /x
COPY ["with space", "/dest dir/"]
