FROM scratch
ENV A=1
RUN --mount=type=cache,target=/x,sharing=sometimes true
