FROM busybox
ARG WHO=world
COPY <<EOF /greeting
hello $WHO
EOF
RUN <<EOT
#!/bin/sh
echo script
EOT
ADD https://example.com/file.tar.gz /tmp/
ADD --checksum=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef https://example.com/pinned /tmp/pinned
