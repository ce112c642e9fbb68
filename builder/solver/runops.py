"""Carrying out one filesystem op on a mounted, writable root filesystem.

:func:`run_op` does what an :class:`~builder.graph.ops.Exec`,
:class:`~builder.graph.ops.CopyOp` or :class:`~builder.graph.ops.MkdirOp` says inside
``rootfs``; the solver has prepared the snapshot and commits what changed.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import DockerfileError, ExecError
from builder.executor import BindMount, Executor, RunSpec
from builder.fileops import ResolvedUser, copy_into, resolve_path, resolve_user
from builder.frontend.dockerignore import DockerIgnore
from builder.graph.mounts import BindSpec, CacheMount
from builder.graph.ops import ContextSource, CopyOp, Exec, FsOp, MkdirOp, Op
from builder.limits import Limits
from builder.runmounts import SecretSource, run_mounts
from builder.solver.contexts import NamedRoots, context_root
from builder.sshforward import SshAgents

#: Makes the executor of one RUN: its output goes to the first argument, and it stops
#: when the event is set.
ExecutorFactory = Callable[[Callable[[bytes], None] | None, threading.Event], Executor]
#: A read-only view of an op's filesystem, open while the context lasts.
Views = Callable[[Op], AbstractContextManager[Path]]


@dataclass(frozen=True)
class Workspace:
    """What running ops needs from outside the graph: the build context and its
    ``.dockerignore``, a scratch directory, the cache-mount root, the secrets, how to
    make an executor, the resource limits of every RUN, the named local contexts, the
    build's SSH agents and what fills a new cache mount from an imported cache."""

    context: Path
    ignore: DockerIgnore
    scratch: Path
    cache_mounts: Path
    secrets: dict[str, SecretSource]
    file: str
    executor: ExecutorFactory
    cancel: threading.Event
    limits: Limits = field(default_factory=Limits)
    named: NamedRoots = field(default_factory=dict)
    ssh: SshAgents | None = None
    restore: Callable[[str, Path], None] | None = None

    def root(self, source: ContextSource) -> tuple[Path, DockerIgnore]:
        """The directory and ignore rules of the build context or a named local one."""
        return context_root(self.context, self.ignore, self.named, source)


def run_op(ws: Workspace, op: FsOp, rootfs: Path, views: Views, command: str,
           output: Callable[[bytes], None] | None) -> None:
    """Carry out ``op`` in ``rootfs``; ``views`` opens the filesystems of its inputs.
    A RUN that exits non-zero raises :class:`~builder.errors.ExecError` naming ``command``."""
    if isinstance(op, Exec):
        _exec(ws, op, rootfs, views, command, output)
    elif isinstance(op, CopyOp):
        ignore = None
        source: AbstractContextManager[Path]
        if isinstance(op.source, ContextSource):
            directory, ignore = ws.root(op.source)
            source = nullcontext(directory)
        else:
            source = views(op.source)
        with source as root:
            copy_into(op.spec, root, rootfs, ignore=ignore, scratch=ws.scratch)
    elif isinstance(op, MkdirOp):
        _mkdir(ws, op, rootfs)
    else:
        raise TypeError(f"{type(op).__name__} is not run on a root filesystem")


def _view(ws: Workspace, views: Views, source: Op) -> AbstractContextManager[Path]:
    if isinstance(source, ContextSource):
        return nullcontext(ws.root(source)[0])
    return views(source)


def user_ids(rootfs: Path, user: str, line: int, file: str) -> ResolvedUser:
    """``user`` (name or ``uid[:gid]``) as numeric ids in ``rootfs``; root when empty."""
    if not user:
        return ResolvedUser(0, 0)
    try:
        resolved: ResolvedUser = resolve_user(rootfs, user)
    except DockerfileError as exc:
        if exc.line is not None:
            raise
        raise DockerfileError(exc.message, line, file) from None
    return resolved


def _mkdir(ws: Workspace, op: MkdirOp, rootfs: Path) -> None:
    target = resolve_path(rootfs, op.path)
    if target.exists():
        return
    owner = user_ids(rootfs, op.user, op.line, ws.file)
    missing = []
    probe = target
    while not probe.exists() and probe != rootfs:
        missing.append(probe)
        probe = probe.parent
    for d in reversed(missing):
        d.mkdir(0o755)
        os.chown(d, owner.uid, owner.gid)


def _exec(ws: Workspace, op: Exec, rootfs: Path, views: Views, command: str,
          output: Callable[[bytes], None] | None) -> None:
    ids = user_ids(rootfs, op.user, op.line, ws.file)
    by_name = {m.spec.from_: m.source for m in op.mounts
               if isinstance(m.spec, BindSpec | CacheMount) and m.spec.from_ is not None
               and m.source is not None}
    ws.scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="run-", dir=ws.scratch) as tmp:
        scripts: list[BindMount] = []
        for script in op.scripts:
            path = Path(tmp) / f"heredoc-{len(scripts)}"
            path.write_text(script.content)
            path.chmod(0o755)
            scripts.append(BindMount(str(path), script.target))
        with run_mounts([m.spec for m in op.mounts], cache_root=ws.cache_mounts,
                        scratch=ws.scratch, context=ws.context,
                        sources=lambda name: _view(ws, views, by_name[name]),
                        secrets=ws.secrets, ssh=ws.ssh, restore=ws.restore,
                        line=op.line, file=ws.file, ignore=ws.ignore) as plan:
            spec = RunSpec(args=op.args, env=op.env + plan.env, cwd=op.cwd,
                           user=f"{ids.uid}:{ids.gid}", groups=ids.process_groups,
                           network=op.network, security=op.security,
                           extra_hosts=op.extra_hosts,
                           extra_mounts=(*scripts, *plan.mounts), limits=ws.limits)
            result = ws.executor(output, ws.cancel).run(spec, rootfs)
    if result.exit_code != 0:
        raise ExecError(result.exit_code, command, result.output_tail, result.stopped_by)
