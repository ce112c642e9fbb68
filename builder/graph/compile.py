"""Compiling a build plan into a :class:`BuildGraph`: words expanded, ops made.

:func:`compile_graph` is a pure function of the plan, the build arguments and the configs of
the base images, which it asks :class:`BaseImages` for (the solver's image resolver answers;
only the images of the stages the target needs are asked for). Everything the Dockerfile
gets wrong that can be known before a build runs is raised here as a
:class:`~builder.errors.DockerfileError` at its line: bad ``--mount`` options, a bad
``--network`` (or ``RUN --network=host`` without the ``network.host`` entitlement), an
unknown instruction, an ONBUILD trigger that does not parse, a ``RUN --security=insecure``
the build is not entitled to.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from builder.buildcontexts import NamedContext, lookup
from builder.entitlements import NETWORK_HOST, SECURITY_INSECURE, Entitlements
from builder.errors import BuildError, DockerfileError, ImageNotFound
from builder.fileops import CopySpec
from builder.frontend.convert import BuildPlan, StagePlan, find_stage
from builder.frontend.instructions import (
    Add,
    Copy,
    Instruction,
    Run,
    Workdir,
    parse_dockerfile,
)
from builder.frontend.parser import Heredoc
from builder.frontend.words import expand_heredoc
from builder.graph.config import StageConfig
from builder.graph.configsteps import CONFIG_STEPS, Scope
from builder.graph.mounts import BindSpec, CacheMount, parse_mount
from builder.graph.ops import (
    ContextSource,
    CopyOp,
    Exec,
    ExecMount,
    FsOp,
    ImageSource,
    MergeOp,
    MkdirOp,
    Op,
    ScratchSource,
    Script,
)
from builder.graph.plan import BuildGraph, StageGraph, Step
from layerstore.oci import Image, Platform

if TYPE_CHECKING:
    from builder.executor.protocol import ExtraHost, Network, Security

__all__ = ["BaseImages", "compile_graph", "describe"]

_NETWORKS: dict[str, Network] = {"default": "default", "none": "none", "host": "host"}
_SECURITY: dict[str, Security] = {"sandbox": "sandbox", "insecure": "insecure"}


class BaseImages(Protocol):
    """Where the compiler gets the config of a base image."""

    def image(self, ref: str, platform: Platform) -> Image:
        """The image config ``ref`` names for ``platform``; raises
        :class:`~builder.errors.ImageNotFound` when there is none."""
        ...


def compile_graph(plan: BuildPlan, *, build_args: Mapping[str, str], network: str,
                  images: BaseImages, source_platform: Platform | None = None,
                  allow: Entitlements | None = None,
                  extra_hosts: tuple[ExtraHost, ...] = (),
                  contexts: Mapping[str, NamedContext] | None = None) -> BuildGraph:
    """The graph of ``plan``'s stages. ``network`` is the default RUN network; an image named
    by ``--from`` (not a stage) is read for ``source_platform`` (default: the first stage's
    platform). ``allow`` is what the build is entitled to (``RUN --network=host`` needs
    ``network.host``; default: nothing); every RUN gets ``extra_hosts`` in its ``/etc/hosts``.
    ``contexts`` are the named contexts (``--build-context``) the plan was made with."""
    first = next(iter(plan.stages.values())).platform
    compiler = _Compiler(plan, build_args, network, images, source_platform or first,
                         allow or Entitlements(), extra_hosts, contexts or {})
    for index in plan.stages:
        compiler.stages[index] = compiler.stage(plan.stages[index])
    return BuildGraph(dict(compiler.stages), plan.target, plan.file,
                      len(plan.dockerfile.stages) > 1)


def describe(ins: Instruction) -> str:
    """The progress title of a filesystem instruction (its unexpanded text, first line)."""
    if isinstance(ins, Run):
        text = ins.command.args[0] if not ins.command.exec_form else \
            "[" + ", ".join(f'"{a}"' for a in ins.command.args) + "]"
        return f"RUN {text}".splitlines()[0]
    if isinstance(ins, Copy | Add):
        flag = f"--from={ins.from_} " if isinstance(ins, Copy) and ins.from_ else ""
        return f"{type(ins).__name__.upper()} {flag}{' '.join(ins.sources)} {ins.dest}"
    if isinstance(ins, Workdir):
        return f"WORKDIR {ins.path}"
    return type(ins).__name__.upper()


@dataclass
class _Stage:
    """The compiler's cursor in one stage: its config, filesystem op and steps so far."""

    config: StageConfig
    root: Op
    platform: Platform
    steps: list[Step] = field(default_factory=list)
    reads: set[int] = field(default_factory=set)


class _Compiler:
    def __init__(self, plan: BuildPlan, build_args: Mapping[str, str], network: str,
                 images: BaseImages, source_platform: Platform, allow: Entitlements,
                 extra_hosts: tuple[ExtraHost, ...],
                 contexts: Mapping[str, NamedContext]) -> None:
        self.plan = plan
        self.file = plan.file
        self.scope = Scope(plan.file, plan.dockerfile.directives.escape, build_args,
                           plan.global_args)
        self.build_args = build_args
        self.network = network
        self.images = images
        self.source_platform = source_platform
        self.stages: dict[int, StageGraph] = {}
        self.allow = allow
        self.extra_hosts = extra_hosts
        self.contexts = contexts

    def fail(self, message: str, line: int | None) -> DockerfileError:
        return DockerfileError(message, line, self.file)

    def stage(self, plan: StagePlan) -> StageGraph:
        line = plan.stage.from_.line
        base: Op
        base_image: Image | None
        if plan.base_stage is not None:
            parent = self.stages[plan.base_stage]
            base, base_image = parent.root, parent.image()
            config = StageConfig.start(base_image, self.build_args)
            config = replace(config, args=parent.config.args)  # a stage keeps its base's ARGs
            base_title = parent.display
        elif plan.base_context is not None:
            base, base_image = ScratchSource(plan.platform), None
            config = StageConfig.start(None, self.build_args)
            base_title = plan.base_context
        elif (plan.base_image or "scratch") == "scratch":
            base, base_image = ScratchSource(plan.platform), None
            config = StageConfig.start(None, self.build_args)
            base_title = "scratch"
        else:
            ref = plan.base_image or "scratch"
            try:
                base_image = self.images.image(ref, plan.platform)
            except ImageNotFound as exc:
                raise self.fail(f"FROM {ref}: {exc}", line) from None
            base = ImageSource(ref, plan.platform)
            config = StageConfig.start(base_image, self.build_args)
            base_title = ref
        cursor = _Stage(config, base, plan.platform)
        if plan.base_context is not None:
            cursor.root = CopyOp(base, ContextSource(plan.base_context), CopySpec(
                sources=(".",), dest="/", instruction="FROM", line=line, file=self.file),
                line=line)
            cursor.steps.append(Step(line, "FROM", f"FROM {plan.base_context}", cursor.root,
                                     f"FROM {plan.base_context} (context)"))
        for ins in (*self.triggers(config.triggers, line), *plan.stage.instructions):
            self.instruction(cursor, ins)
        return StageGraph(plan.index, plan.display, plan.platform, base, plan.base_stage,
                          base_image, f"FROM {base_title}", tuple(cursor.steps),
                          cursor.config, line, frozenset(cursor.reads),
                          plan.stage.name is not None)

    def triggers(self, triggers: tuple[str, ...], line: int) -> list[Instruction]:
        out: list[Instruction] = []
        for trigger in triggers:
            try:
                parsed = parse_dockerfile(f"FROM scratch\n{trigger}\n", self.file)
            except DockerfileError as exc:
                raise self.fail(f"ONBUILD trigger {trigger!r} of the base image: "
                                f"{exc.message}", line) from None
            out.extend(replace(ins, line=line) for ins in parsed.stages[0].instructions)
        return out

    def instruction(self, s: _Stage, ins: Instruction) -> None:
        keyword = type(ins).__name__.upper()
        command = ""
        handler = CONFIG_STEPS.get(type(ins))
        if handler is not None:
            s.config, created_by = handler(self.scope, s.config, ins)
            s.steps.append(Step(ins.line, keyword, created_by))
            return
        op: FsOp
        if isinstance(ins, Run):
            op, created_by = self.run(s, ins)
            command = " ".join(op.args if ins.command.exec_form
                               else op.args[len(s.config.shell):])
        elif isinstance(ins, Copy | Add):
            op, created_by = self.copy(s, ins)
        elif isinstance(ins, Workdir):
            op, created_by = self.workdir(s, ins)
        else:
            raise self.fail(f"{keyword} is not allowed here", ins.line)
        s.root = op
        s.steps.append(Step(ins.line, keyword, created_by, op, describe(ins), command))

    def x(self, s: _Stage, word: str, line: int, what: str) -> str:
        return self.scope.expand(s.config, word, line, what)

    def source(self, s: _Stage, name: str) -> Op:
        """The filesystem ``--from=name`` / ``from=name`` reads: a named context's, a
        stage's or an image's."""
        named = lookup(self.contexts, name)
        if named is not None:
            if named.kind == "local":
                return ContextSource(named.name)
            if named.kind != "target":
                return ImageSource(named.value, self.source_platform)
            name = named.value
        index = find_stage(self.plan.dockerfile, name)
        if index is not None and index in self.stages:
            s.reads.add(index)
            return self.stages[index].root
        return ImageSource(name, self.source_platform)

    def workdir(self, s: _Stage, ins: Workdir) -> tuple[MkdirOp, str]:
        path = self.x(s, ins.path, ins.line, "WORKDIR")
        if not path:
            raise self.fail("WORKDIR cannot be empty", ins.line)
        path = posixpath.normpath(posixpath.join(s.config.workdir or "/", path))
        s.config = replace(s.config, workdir=path)
        return MkdirOp(s.root, path, s.config.user, ins.line), f"WORKDIR {path}"

    def run(self, s: _Stage, ins: Run) -> tuple[Exec, str]:
        c = s.config
        asked = self.x(s, ins.network, ins.line, "RUN --network") if ins.network else \
            self.network
        network = _NETWORKS.get(asked)
        if network is None:
            raise self.fail(f"RUN --network={asked}: expected default, none or host", ins.line)
        if network == "host" and ins.network:
            try:
                self.allow.require(NETWORK_HOST, "RUN --network=host")
            except BuildError as exc:
                raise self.fail(str(exc), ins.line) from None
        asked_security = self.x(s, ins.security, ins.line, "RUN --security") \
            if ins.security else "sandbox"
        security = _SECURITY.get(asked_security)
        if security is None:
            raise self.fail(f"RUN --security={asked_security}: expected sandbox or insecure",
                            ins.line)
        if security == "insecure" and not self.allow.allows(SECURITY_INSECURE):
            raise self.fail(f"RUN --security=insecure needs the {SECURITY_INSECURE} "
                            f"entitlement: pass --allow {SECURITY_INSECURE} (or list it in "
                            "insecure-entitlements of the builder config)", ins.line)
        mounts = []
        for text in ins.mounts:
            spec = parse_mount(self.x(s, text, ins.line, "RUN --mount"), line=ins.line,
                               file=self.file, workdir=c.workdir or "/")
            source: Op | None = None
            if isinstance(spec, BindSpec | CacheMount) and spec.from_ is not None:
                source = self.source(s, spec.from_)
            elif isinstance(spec, BindSpec):
                source = ContextSource()
            mounts.append(ExecMount(spec, source))
        args, scripts = _run_args(c, ins)
        shown = c.history_args()
        prefix = f"|{len(shown)} " + " ".join(shown) + " " if shown else ""
        op = Exec(s.root, args, c.run_env(), c.workdir or "/", c.user, network,
                  tuple(mounts), scripts, security, extra_hosts=self.extra_hosts,
                  line=ins.line)
        return op, "RUN " + prefix + " ".join(args) + " # buildkit"

    def copy(self, s: _Stage, ins: Copy | Add) -> tuple[CopyOp | MergeOp, str]:
        keyword = "ADD" if isinstance(ins, Add) else "COPY"
        x = lambda w, what: self.x(s, w, ins.line, f"{keyword} {what}")  # noqa: E731
        names = {h.name for h in ins.heredocs}
        sources = tuple(_heredoc_name(src, names) or x(src, "source") for src in ins.sources)
        dest = x(ins.dest, "destination")
        from_ = x(ins.from_, "--from") if isinstance(ins, Copy) and ins.from_ else None
        spec = CopySpec(
            sources=sources, dest=dest, workdir=s.config.workdir or "/",
            chown=x(ins.chown, "--chown") if ins.chown else None,
            chmod=x(ins.chmod, "--chmod") if ins.chmod else None,
            parents=isinstance(ins, Copy) and ins.parents,
            exclude=tuple(x(e, "--exclude") for e in ins.exclude),
            add=isinstance(ins, Add),
            checksum=x(ins.checksum, "--checksum") if isinstance(ins, Add) and ins.checksum
            else None,
            from_context=from_ is None or _is_local(self.contexts, from_),
            heredocs=self.heredoc_files(s, ins.heredocs),
            instruction=keyword, line=ins.line, file=self.file,
        )
        urls = [src for src in sources if src.startswith(("http://", "https://"))]
        source = self.source(s, from_) if from_ is not None else ContextSource()
        cacheable = not urls or spec.checksum is not None
        op: CopyOp | MergeOp
        if ins.link and dest.endswith("/") and _numeric_owner(spec.chown):
            upper = CopyOp(ScratchSource(s.platform), source, spec, cacheable, ins.line)
            op = MergeOp(s.root, upper, ins.line)
        else:
            op = CopyOp(s.root, source, spec, cacheable, ins.line)
        flags = []
        if from_:
            flags.append(f"--from={from_}")
        if spec.chown:
            flags.append(f"--chown={spec.chown}")
        if spec.chmod:
            flags.append(f"--chmod={spec.chmod}")
        return op, " ".join([keyword, *flags, *sources, dest]) + " # buildkit"

    def heredoc_files(self, s: _Stage, docs: tuple[Heredoc, ...]
                      ) -> tuple[tuple[str, bytes], ...]:
        env = s.config.expansion_env()
        escape = self.scope.escape
        return tuple((h.name, (expand_heredoc(h.content, env, escape) if h.expand
                               else h.content).encode()) for h in docs)


def _is_local(contexts: Mapping[str, NamedContext], name: str) -> bool:
    named = lookup(contexts, name)
    return named is not None and named.kind == "local"


def _numeric_owner(chown: str | None) -> bool:
    """Whether ``--chown`` needs no user database.

    A ``COPY --link`` becomes a copy onto an empty filesystem merged onto the base when its
    destination is a directory (ends in ``/``, so a file or symlink of the base cannot change
    where things land) and its owner needs no names looked up (an empty filesystem has no
    ``/etc/passwd``); as with BuildKit, parent directories the copy creates come from the
    empty filesystem. Otherwise it is a plain copy."""
    return chown is None or all(part.isdigit() for part in chown.split(":"))


def _heredoc_name(source: str, names: set[str]) -> str | None:
    if "<<" not in source:
        return None
    name = source.lstrip("0123456789").removeprefix("<<").removeprefix("-").strip("'\"")
    return name if name in names else None


def _run_args(c: StageConfig, ins: Run) -> tuple[tuple[str, ...], tuple[Script, ...]]:
    """The argv of a RUN, with here-documents turned into a script or a mounted file."""
    if not ins.heredocs:
        return c.command(ins.command.exec_form, ins.command.args), ()
    cmdline = ins.command.args[0]
    doc = ins.heredocs[0]
    if len(ins.heredocs) == 1 and cmdline.strip().lstrip("0123456789").startswith("<<") and \
            len(cmdline.split()) == 1:
        if doc.content.startswith("#!"):
            target = f"/dev/pipes/{doc.name}"
            return (target,), (Script(target, doc.content),)
        return (*c.shell, doc.content), ()
    script_text = cmdline + "\n" + "".join(h.content + h.name + "\n" for h in ins.heredocs)
    return (*c.shell, script_text), ()
