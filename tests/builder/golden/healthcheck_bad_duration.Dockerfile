FROM alpine
HEALTHCHECK --interval=10 CMD true
