ARG GLOBAL=g
FROM busybox
ARG GLOBAL
ARG LOCAL=l-${GLOBAL}
ENV PATH=/opt/bin:$PATH NAME="a b"
USER nobody
RUN echo $LOCAL $NAME
SHELL ["/bin/bash", "-c"]
CMD echo hi
HEALTHCHECK --interval=5s CMD true
STOPSIGNAL SIGTERM
VOLUME /data
ONBUILD RUN echo later
MAINTAINER someone
