FROM alpine
RUN apk add \
    # a comment inside
    curl \

    git
RUN echo one \
  two
CMD ["sh", \
     "-c", "echo hi"]
