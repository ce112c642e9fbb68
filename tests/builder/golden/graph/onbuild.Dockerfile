FROM with-triggers
RUN echo child
