FROM busybox
WORKDIR /app
COPY --link --chown=10:10 src/ /app/src/
COPY --link --chown=app src/ /app/named/
COPY --link config.ini /etc/app.ini
