FROM busybox AS tools
RUN touch /tool

FROM busybox
WORKDIR /src
RUN --mount=type=cache,target=.cache,id=pip,sharing=locked \
    --mount=type=bind,source=requirements.txt,target=/tmp/req.txt \
    --mount=type=bind,from=tools,source=/tool,target=/usr/bin/tool \
    --mount=type=tmpfs,target=/scratch,size=10m \
    --mount=type=secret,id=token,env=TOKEN \
    --network=none \
    install
RUN --mount=type=cache,target=/seed,from=tools,source=/ true
