FROM alpine
ONBUILD RUN --mount=type=cache,target=/c make
ONBUILD NOPE x
