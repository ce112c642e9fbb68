"""Carrying out one instruction on a stage's state: config changes, RUN, COPY/ADD, WORKDIR."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import threading
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from builder.errors import DockerfileError, ExecError
from builder.executor import BindMount, NamespaceExecutor, RunSpec
from builder.fileops import CopySpec, ResolvedUser, copy_into, resolve_path, resolve_user
from builder.frontend.convert import expand
from builder.frontend.dockerignore import DockerIgnore
from builder.frontend.instructions import (
    Add,
    Arg,
    Cmd,
    Command,
    Copy,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Instruction,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    Stopsignal,
    User,
    Volume,
    Workdir,
)
from builder.frontend.parser import Heredoc
from builder.frontend.words import expand_heredoc, process_words
from builder.options import BuildOptions
from builder.progress import Vertex
from builder.remotecache import CachedStep, CacheSource, StepLog
from builder.runmounts import BindSpec, CacheMount, RunMount, parse_mount, run_mounts
from builder.solver.cache import CacheRecord, cache_key
from builder.solver.contenthash import sources_digest
from builder.solver.state import StageState
from builder.solver.steps import commit_change
from builder.store import BuildStore, snapshot_exists, unpack_layers
from layerstore.oci import Healthcheck as HealthConfig

FS_INSTRUCTIONS = (Run, Copy, Add, Workdir)
Sources = Callable[[str, int], AbstractContextManager[Path]]


@dataclass(frozen=True)
class StepContext:
    """What every instruction of a build can use."""

    store: BuildStore
    options: BuildOptions
    file: str
    escape: str
    ignore: DockerIgnore
    sources: Sources
    scratch: Path
    global_args: dict[str, str]
    created: Callable[[], str]
    cancel: threading.Event
    source_key: Callable[[str, int], str]
    use_cache: Callable[[StageState], bool]
    steplog: StepLog = field(default_factory=StepLog)
    remote: tuple[CacheSource, ...] = ()


def _go_list(args: tuple[str, ...] | list[str]) -> str:
    return "[" + " ".join(json.dumps(a) for a in args) + "]"


def _command_args(state: StageState, command: Command) -> tuple[str, ...]:
    return command.args if command.exec_form else (*state.shell, command.args[0])


def _x(ctx: StepContext, state: StageState, word: str, line: int, what: str) -> str:
    return expand(word, state.expansion_env(), ctx.escape, line, ctx.file, what)


def dispatch(ctx: StepContext, state: StageState, ins: Instruction,
             vertex: Vertex | None) -> None:
    """Apply ``ins`` to ``state``; filesystem instructions report to ``vertex``."""
    handler = _HANDLERS.get(type(ins))
    if handler is None:
        raise DockerfileError(f"{type(ins).__name__.upper()} is not allowed here", ins.line,
                              ctx.file)
    handler(ctx, state, ins, vertex)


def _history(ctx: StepContext, state: StageState, text: str) -> None:
    """Record a config-only instruction. It goes through the cache like a filesystem
    step, so a rebuild reuses its timestamp and gives the same image."""
    key = cache_key(state.cache_key, {"op": "config", "history": text})
    created = None
    if ctx.use_cache(state):
        record = ctx.store.cache.get(key)
        if record is not None:
            created = record.created
        elif (remote := _remote_step(ctx, key)) is not None:
            created = remote[1].created
    if created is None:
        created = ctx.created()
    ctx.store.cache.put(CacheRecord(key, state.chain, None, created))
    state.cache_key = key
    state.add_history(text, created, empty=True)
    _log(ctx, state, key, created, True)


def _log(ctx: StepContext, state: StageState, key: str, created: str, empty: bool) -> None:
    ctx.steplog.add(CachedStep(key, tuple(state.layers), created, empty, state.plan.index))


def _remote_step(ctx: StepContext, key: str) -> tuple[CacheSource, CachedStep] | None:
    """The first imported cache holding ``key``, with its step."""
    for source in ctx.remote:
        step = source.lookup(key)
        if step is not None:
            return source, step
    return None


def _from_remote(ctx: StepContext, state: StageState, key: str) -> CachedStep | None:
    """Take a step from an imported cache: fetch the blobs of its layer stack and unpack
    them (each layer once, by chainID)."""
    found = _remote_step(ctx, key)
    if found is None:
        return None
    source, step = found
    source.fetch(ctx.store, step.layers)
    if not step.empty:
        state.layers = list(step.layers)
        state.chain = unpack_layers(ctx.store, [x.descriptor for x in step.layers],
                                    [x.diff_id for x in step.layers])
    return step


def _env(ctx: StepContext, state: StageState, ins: Env, _v: Vertex | None) -> None:
    scope = state.expansion_env()
    pairs = [(expand(p.key, scope, ctx.escape, ins.line, ctx.file, "ENV"),
              expand(p.value, scope, ctx.escape, ins.line, ctx.file, "ENV")) for p in ins.pairs]
    for key, value in pairs:
        if not key:
            raise DockerfileError("ENV names can not be blank", ins.line, ctx.file)
        state.env[key] = value
    _history(ctx, state, "ENV " + " ".join(f"{k}={v}" for k, v in pairs))


def _arg(ctx: StepContext, state: StageState, ins: Arg, _v: Vertex | None) -> None:
    build_args = ctx.options.build_args
    shown = []
    for d in ins.args:
        value: str | None
        if d.name in build_args:
            value = build_args[d.name]
        elif d.default is not None:
            value = _x(ctx, state, d.default, ins.line, "ARG")
        else:
            value = ctx.global_args.get(d.name)
        state.args[d.name] = value
        shown.append(d.name if value is None else f"{d.name}={value}")
    _history(ctx, state, "ARG " + " ".join(shown))


def _label(ctx: StepContext, state: StageState, ins: Label, _v: Vertex | None) -> None:
    pairs = [(_x(ctx, state, p.key, ins.line, "LABEL"), _x(ctx, state, p.value, ins.line,
                                                            "LABEL")) for p in ins.pairs]
    for key, value in pairs:
        state.labels[key] = value
    _history(ctx, state, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs))


def _expose(ctx: StepContext, state: StageState, ins: Expose, _v: Vertex | None) -> None:
    added = []
    for raw in ins.ports:
        for word in process_words(raw, state.expansion_env(), ctx.escape):
            added.extend(_ports(word, ins.line, ctx.file))
    for port in added:
        state.exposed[port] = {}
    _history(ctx, state, "EXPOSE map[" + " ".join(f"{p}:{{}}" for p in sorted(added)) + "]")


def _ports(word: str, line: int, file: str) -> list[str]:
    number, _, proto = word.partition("/")
    proto = (proto or "tcp").lower()
    low, dash, high = number.partition("-")
    try:
        first, last = int(low), int(high) if dash else int(low)
    except ValueError:
        raise DockerfileError(f"invalid containerPort: {word}", line, file) from None
    if proto not in ("tcp", "udp", "sctp") or not 0 < first <= last <= 65535:
        raise DockerfileError(f"invalid containerPort: {word}", line, file)
    return [f"{p}/{proto}" for p in range(first, last + 1)]


def _volume(ctx: StepContext, state: StageState, ins: Volume, _v: Vertex | None) -> None:
    paths = [_x(ctx, state, p, ins.line, "VOLUME") for p in ins.paths]
    for path in paths:
        if not path.strip():
            raise DockerfileError("VOLUME specified can not be an empty string", ins.line,
                                  ctx.file)
        state.volumes[path] = {}
    _history(ctx, state, "VOLUME " + _go_list(paths).replace('"', ""))


def _user(ctx: StepContext, state: StageState, ins: User, _v: Vertex | None) -> None:
    state.user = _x(ctx, state, ins.user, ins.line, "USER")
    _history(ctx, state, f"USER {state.user}")


def _stopsignal(ctx: StepContext, state: StageState, ins: Stopsignal,
                _v: Vertex | None) -> None:
    state.stop_signal = _x(ctx, state, ins.signal, ins.line, "STOPSIGNAL")
    _history(ctx, state, f"STOPSIGNAL {state.stop_signal}")


def _shell(ctx: StepContext, state: StageState, ins: Shell, _v: Vertex | None) -> None:
    state.shell = ins.shell
    state.custom_shell = ins.shell
    _history(ctx, state, "SHELL " + _go_list(ins.shell).replace('"', ""))


def _healthcheck(ctx: StepContext, state: StageState, ins: Healthcheck,
                 _v: Vertex | None) -> None:
    state.healthcheck = HealthConfig(
        test=ins.test, interval=ins.interval or None, timeout=ins.timeout or None,
        start_period=ins.start_period or None, start_interval=ins.start_interval or None,
        retries=ins.retries or None)
    _history(ctx, state, "HEALTHCHECK " + " ".join(ins.test))


def _cmd(ctx: StepContext, state: StageState, ins: Cmd, _v: Vertex | None) -> None:
    state.cmd = _command_args(state, ins.command)
    state.cmd_set = True
    _history(ctx, state, "CMD " + _go_list(state.cmd))


def _entrypoint(ctx: StepContext, state: StageState, ins: Entrypoint,
                _v: Vertex | None) -> None:
    state.entrypoint = _command_args(state, ins.command)
    if not state.cmd_set:
        state.cmd = None
    _history(ctx, state, "ENTRYPOINT " + _go_list(state.entrypoint))


def _onbuild(ctx: StepContext, state: StageState, ins: Onbuild, _v: Vertex | None) -> None:
    state.on_build.append(ins.expression)
    _history(ctx, state, f"ONBUILD {ins.expression}")


def _maintainer(ctx: StepContext, state: StageState, ins: Maintainer,
                _v: Vertex | None) -> None:
    state.author = _x(ctx, state, ins.name, ins.line, "MAINTAINER")
    _history(ctx, state, f"MAINTAINER {state.author}")


def _step(ctx: StepContext, state: StageState, vertex: Vertex | None,
          material: dict[str, Any] | None, work: Callable[[Path], None],
          created_by: str) -> None:
    """A filesystem step through the build cache: reuse the snapshot and layer a step with
    the same key made before, or run ``work`` and remember what it made. ``material=None``
    marks a step that cannot be cached (it always runs)."""
    key = cache_key(state.cache_key, material) if material is not None else None
    if key is not None and ctx.use_cache(state):
        record = ctx.store.cache.get(key)
        if record is not None and _usable(ctx.store, record):
            if record.layer is not None:
                state.layers.append(record.layer)
                state.chain = record.chain
            state.cache_key = key
            state.add_history(created_by, record.created, empty=record.layer is None)
            _log(ctx, state, key, record.created, record.layer is None)
            if vertex is not None:
                vertex.cached()
            return
        remote = _from_remote(ctx, state, key)
        if remote is not None:
            ctx.store.cache.put(CacheRecord(key, state.chain, None if remote.empty
                                            else state.layers[-1], remote.created))
            state.cache_key = key
            state.add_history(created_by, remote.created, empty=remote.empty)
            _log(ctx, state, key, remote.created, remote.empty)
            if vertex is not None:
                vertex.cached()
            return
    made = commit_change(ctx.store, state, work, compression=ctx.options.compression,
                         level=ctx.options.compression_level,
                         source_date_epoch=ctx.options.source_date_epoch)
    created = ctx.created()
    if key is not None:
        ctx.store.cache.put(CacheRecord(key, state.chain, state.layers[-1] if made else None,
                                        created))
        state.cache_key = key
    else:
        state.cache_key = cache_key(state.cache_key, {"uncached": uuid.uuid4().hex})
    state.add_history(created_by, created, empty=not made)
    _log(ctx, state, state.cache_key, created, not made)


def _usable(store: BuildStore, record: CacheRecord) -> bool:
    """A record whose snapshot or layer blob was pruned is a miss."""
    if record.layer is None:
        return True
    return (record.chain is not None and snapshot_exists(store, record.chain)
            and store.content.exists(record.layer.descriptor.digest))


def _user_ids(rootfs: Path, user: str, line: int, file: str) -> ResolvedUser:
    if not user:
        return ResolvedUser(0, 0)
    try:
        resolved: ResolvedUser = resolve_user(rootfs, user)
    except DockerfileError as exc:
        if exc.line is not None:
            raise
        raise DockerfileError(exc.message, line, file) from None
    return resolved


def _workdir(ctx: StepContext, state: StageState, ins: Workdir, _v: Vertex | None) -> None:
    path = _x(ctx, state, ins.path, ins.line, "WORKDIR")
    if not path:
        raise DockerfileError("WORKDIR cannot be empty", ins.line, ctx.file)
    path = posixpath.normpath(posixpath.join(state.workdir or "/", path))
    state.workdir = path
    user = state.user

    def work(rootfs: Path) -> None:
        target = resolve_path(rootfs, path)
        if target.exists():
            return
        owner = _user_ids(rootfs, user, ins.line, ctx.file)
        uid, gid = owner.uid, owner.gid
        missing = []
        probe = target
        while not probe.exists() and probe != rootfs:
            missing.append(probe)
            probe = probe.parent
        for d in reversed(missing):
            d.mkdir(0o755)
            os.chown(d, uid, gid)

    _step(ctx, state, _v, {"op": "workdir", "path": path, "user": user}, work,
          f"WORKDIR {path}")


def _run_args(state: StageState, ins: Run, scratch: Path
              ) -> tuple[tuple[str, ...], tuple[BindMount, ...]]:
    """The argv of a RUN, with here-documents turned into a script or a mounted file."""
    if not ins.heredocs:
        return _command_args(state, ins.command), ()
    cmdline = ins.command.args[0]
    doc: Heredoc = ins.heredocs[0]
    if len(ins.heredocs) == 1 and cmdline.strip().lstrip("0123456789").startswith("<<") and \
            len(cmdline.split()) == 1:
        content = doc.content
        if content.startswith("#!"):
            script = scratch / f"heredoc-{doc.name}"
            script.write_text(content)
            script.chmod(0o755)
            target = f"/dev/pipes/{doc.name}"
            return (target,), (BindMount(str(script), target),)
        return (*state.shell, content), ()
    script_text = cmdline + "\n" + "".join(h.content + h.name + "\n" for h in ins.heredocs)
    return (*state.shell, script_text), ()


def _run(ctx: StepContext, state: StageState, ins: Run, vertex: Vertex | None) -> None:
    network = _x(ctx, state, ins.network, ins.line, "RUN --network") if ins.network else \
        ctx.options.network
    if network not in ("default", "none", "host"):
        raise DockerfileError(f"RUN --network={network}: expected default, none or host",
                              ins.line, ctx.file)
    if ins.security not in (None, "sandbox"):
        raise DockerfileError(f"RUN --security={ins.security} is not supported (only "
                              "sandbox)", ins.line, ctx.file)
    mounts = [parse_mount(_x(ctx, state, m, ins.line, "RUN --mount"), line=ins.line,
                          file=ctx.file, workdir=state.workdir or "/") for m in ins.mounts]
    args, extra = _run_args(state, ins, ctx.scratch)
    shown = state.history_args()
    prefix = f"|{len(shown)} " + " ".join(shown) + " " if shown else ""
    created_by = "RUN " + prefix + " ".join(args) + " # buildkit"
    env = state.run_env()
    cwd = state.workdir or "/"
    user = state.user
    output = vertex.log if vertex is not None else None

    def work(rootfs: Path) -> None:
        ids = _user_ids(rootfs, user, ins.line, ctx.file)
        with run_mounts(mounts, cache_root=ctx.store.cache_mounts, scratch=ctx.scratch,
                        context=ctx.options.context,
                        sources=lambda name: ctx.sources(name, ins.line),
                        secrets=ctx.options.secrets, line=ins.line, file=ctx.file,
                        ignore=ctx.ignore) as plan:
            spec = RunSpec(args=args, env=env + plan.env, cwd=cwd, user=f"{ids.uid}:{ids.gid}",
                           groups=ids.process_groups,
                           network=network,  # type: ignore[arg-type]
                           extra_mounts=(*extra, *plan.mounts))
            result = NamespaceExecutor(output=output, cancel=ctx.cancel).run(spec, rootfs)
        if result.exit_code != 0:
            shown_cmd = " ".join(args[len(state.shell):] if not ins.command.exec_form
                                 else args)
            raise ExecError(result.exit_code, shown_cmd, result.output_tail)

    material = {"op": "run", "args": args, "env": env, "cwd": cwd, "user": user,
                "network": network, "mounts": [_mount_material(ctx, m, ins.line) for m in mounts],
                "scripts": [Path(m.source).read_text() for m in extra]}
    _step(ctx, state, vertex, material, work, created_by)


def _heredoc_name(source: str, names: set[str]) -> str | None:
    if "<<" not in source:
        return None
    name = source.lstrip("0123456789").removeprefix("<<").removeprefix("-").strip("'\"")
    return name if name in names else None


def _heredoc_files(ctx: StepContext, state: StageState, docs: tuple[Heredoc, ...]
                   ) -> tuple[tuple[str, bytes], ...]:
    env = state.expansion_env()
    return tuple((h.name, (expand_heredoc(h.content, env, ctx.escape) if h.expand
                           else h.content).encode()) for h in docs)


def _copy(ctx: StepContext, state: StageState, ins: Copy | Add, _v: Vertex | None) -> None:
    keyword = "ADD" if isinstance(ins, Add) else "COPY"
    x = lambda w, what: _x(ctx, state, w, ins.line, f"{keyword} {what}")  # noqa: E731
    names = {h.name for h in ins.heredocs}
    sources = tuple(_heredoc_name(s, names) or x(s, "source") for s in ins.sources)
    dest = x(ins.dest, "destination")
    from_ = x(ins.from_, "--from") if isinstance(ins, Copy) and ins.from_ else None
    spec = CopySpec(
        sources=sources, dest=dest, workdir=state.workdir or "/",
        chown=x(ins.chown, "--chown") if ins.chown else None,
        chmod=x(ins.chmod, "--chmod") if ins.chmod else None,
        parents=isinstance(ins, Copy) and ins.parents,
        exclude=tuple(x(e, "--exclude") for e in ins.exclude),
        add=isinstance(ins, Add),
        checksum=x(ins.checksum, "--checksum") if isinstance(ins, Add) and ins.checksum
        else None,
        from_context=from_ is None,
        heredocs=_heredoc_files(ctx, state, ins.heredocs),
        instruction=keyword, line=ins.line, file=ctx.file,
    )
    material = _copy_material(ctx, spec, from_, names, keyword, ins.line)
    ignore = None if from_ is not None else ctx.ignore

    def work(rootfs: Path) -> None:
        source_cm: AbstractContextManager[Path] = (
            ctx.sources(from_, ins.line) if from_ is not None
            else nullcontext(ctx.options.context))
        with source_cm as root:
            copy_into(spec, root, rootfs, ignore=ignore, scratch=ctx.scratch)

    flags = []
    if from_:
        flags.append(f"--from={from_}")
    if spec.chown:
        flags.append(f"--chown={spec.chown}")
    if spec.chmod:
        flags.append(f"--chmod={spec.chmod}")
    text = " ".join([keyword, *flags, *sources, dest]) + " # buildkit"
    _step(ctx, state, _v, material, work, text)


def _copy_material(ctx: StepContext, spec: CopySpec, from_: str | None, heredocs: set[str],
                   keyword: str, line: int) -> dict[str, Any] | None:
    """What decides a COPY/ADD's result: its expanded flags and the content it reads
    (a context hash, or the key of the stage or image it copies from); None for an ADD of a
    URL without ``--checksum``, whose content can change at any time."""
    urls = [s for s in spec.sources if s.startswith(("http://", "https://"))]
    if urls and spec.checksum is None:
        return None
    fields = {k: v for k, v in asdict(spec).items() if k not in ("line", "file", "heredocs")}
    fields["heredocs"] = [(n, hashlib.sha256(c).hexdigest()) for n, c in spec.heredocs]
    local = [s for s in spec.sources if s not in heredocs and s not in urls]
    if from_ is not None:
        fields["from"] = ctx.source_key(from_, line)
    elif local:
        fields["content"] = sources_digest(ctx.options.context, local, ignore=ctx.ignore,
                                           context=True, line=line, file=ctx.file,
                                           instruction=keyword)
    return {"op": keyword.lower(), **fields}


def _mount_material(ctx: StepContext, mount: RunMount, line: int) -> dict[str, Any]:
    """A RUN mount as its cache key sees it: secrets by id (never their value), caches by
    id, binds by the content they expose."""
    fields: dict[str, Any] = {"type": type(mount).__name__, **asdict(mount)}
    if isinstance(mount, BindSpec | CacheMount) and mount.from_ is not None:
        fields["from_"] = ctx.source_key(mount.from_, line)
    elif isinstance(mount, BindSpec):
        fields["content"] = sources_digest(ctx.options.context, [mount.source or "."],
                                           ignore=ctx.ignore, context=True, line=line,
                                           file=ctx.file, instruction="RUN --mount")
    return fields


_Handler = Callable[[StepContext, StageState, Instruction, Vertex | None], None]
_HANDLERS: dict[type, _Handler] = {
    Env: _env, Arg: _arg, Label: _label, Expose: _expose, Volume: _volume, User: _user,
    Stopsignal: _stopsignal, Shell: _shell, Healthcheck: _healthcheck, Cmd: _cmd,
    Entrypoint: _entrypoint, Onbuild: _onbuild, Maintainer: _maintainer, Workdir: _workdir,
    Run: _run, Copy: _copy, Add: _copy,
}  # type: ignore[dict-item]  # fmt: skip
