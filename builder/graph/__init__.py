"""The build graph between the Dockerfile frontend and the solver.

The model: a build is a DAG of frozen, typed ops (:mod:`builder.graph.ops`). A source op
(:class:`~builder.graph.ops.ImageSource`, :class:`~builder.graph.ops.ScratchSource`,
:class:`~builder.graph.ops.ContextSource`) names a filesystem the build starts from; every
other op makes a new filesystem from its ``base`` op and reads other ops' filesystems as
inputs (:class:`~builder.graph.ops.Exec` for RUN with typed mounts,
:class:`~builder.graph.ops.CopyOp` for COPY/ADD, :class:`~builder.graph.ops.MkdirOp` for
WORKDIR, :class:`~builder.graph.ops.MergeOp` for ``COPY --link``: a copy onto an empty
filesystem stacked on the base). An op's digest is a hash of its own fields and its
inputs' digests, so equal ops are equal work: the solver runs each digest once.

Image-config changes are no ops: each stage of a :class:`~builder.graph.plan.BuildGraph` keeps
its instructions as a list of steps — each with its history text and, for a filesystem
instruction, the op it made — and the image config the stage ends with. The compiler
(:mod:`builder.graph.compile`) turns a parsed Dockerfile into that graph as a pure function,
given the configs of the base images (resolved by the solver's image resolver).
"""
