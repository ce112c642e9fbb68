FROM alpine
HEALTHCHECK NONE
HEALTHCHECK CMD curl -f http://x/ || exit 1
