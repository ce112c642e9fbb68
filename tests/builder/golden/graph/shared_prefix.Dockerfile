FROM busybox AS a
RUN make deps
RUN make a

FROM busybox AS b
RUN make deps
RUN make b

FROM scratch
COPY --from=a /a /a
COPY --from=b /b /b
