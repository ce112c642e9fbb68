FROM alpine
HEALTHCHECK --retries=1 NONE
