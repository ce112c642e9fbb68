FROM busybox AS ok
FROM not-there
RUN true
