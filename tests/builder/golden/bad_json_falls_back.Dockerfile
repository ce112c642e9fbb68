FROM alpine
CMD ["a", b]
RUN [ -f /x ] && echo y
ENTRYPOINT ["ok"] trailing
VOLUME [not json
