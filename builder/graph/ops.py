"""The ops of the build graph: frozen values, each with a digest of its inputs.

A digest covers an op's type, every field that decides its result and the digests of the
ops it reads, never where it was written (``line``, ``file``). What an op reads from outside
the graph — the manifest an image reference resolves to, the bytes of context files — is not
in the digest: the solver adds it to the op's cache key when it runs the op.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from functools import cached_property
from typing import TYPE_CHECKING, Any

from builder.fileops import CopySpec
from builder.graph.mounts import BindSpec, RunMount
from layerstore.oci import Platform

if TYPE_CHECKING:
    from builder.executor.protocol import ExtraHost, Network, Security

#: Fields that say where something was written, not what it does.
_NOT_DIGESTED = frozenset({"line", "file"})


def _canonical(value: Any) -> Any:
    if isinstance(value, Op):
        return {"op": value.digest}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields(value)
    if isinstance(value, tuple | list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return "sha256:" + hashlib.sha256(value).hexdigest()
    return value


def _fields(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(value).__name__}
    for f in dataclasses.fields(value):
        if f.name in _NOT_DIGESTED:
            continue
        field_value = getattr(value, f.name)
        if f.metadata.get(_OMIT_DEFAULT) and field_value == f.default:
            continue
        out[f.name] = _canonical(field_value)
    return out


#: Field metadata: leave the field out of the digest while it has its default, so that a
#: field added later keeps the digests (and cache keys) of ops that do not use it.
_OMIT_DEFAULT = "omit-default"


@dataclasses.dataclass(frozen=True)
class Op:
    """Base of every op."""

    @cached_property
    def digest(self) -> str:
        """``sha256:…`` of the op's canonical form."""
        text = json.dumps(_fields(self), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    def inputs(self) -> tuple[Op, ...]:
        """The ops whose filesystems this one reads, its base first."""
        return ()


@dataclasses.dataclass(frozen=True)
class ScratchSource(Op):
    """An empty filesystem."""

    platform: Platform


@dataclasses.dataclass(frozen=True)
class ImageSource(Op):
    """The filesystem of image ``ref`` for ``platform``; the solver resolves the reference
    (pulling it if needed) and unpacks its layers."""

    ref: str
    platform: Platform


@dataclasses.dataclass(frozen=True)
class ContextSource(Op):
    """The build context (with its ``.dockerignore`` applied). Its content enters the cache
    key of the op that reads it, as a hash of the paths that op reads."""

    name: str = "context"


@dataclasses.dataclass(frozen=True)
class ExecMount:
    """One ``RUN --mount``: the typed mount and the op whose filesystem it reads
    (``from=``, or the context for a bind without ``from=``; None for what reads nothing)."""

    spec: RunMount
    source: Op | None = None


@dataclasses.dataclass(frozen=True)
class Script:
    """A here-document run as a script: ``content`` mounted executable at ``target``."""

    target: str
    content: str


@dataclasses.dataclass(frozen=True)
class Exec(Op):
    """RUN: ``args`` on a writable copy of ``base``'s filesystem, as ``user`` (a name or
    ``uid[:gid]`` resolved inside it), in ``cwd``, with the exact environment ``env``, in
    the ``security`` mode of ``RUN --security`` and with ``extra_hosts`` added to its
    ``/etc/hosts`` (``--add-host``)."""

    base: Op
    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str
    network: Network
    mounts: tuple[ExecMount, ...] = ()
    scripts: tuple[Script, ...] = ()
    security: Security = dataclasses.field(default="sandbox",
                                           metadata={_OMIT_DEFAULT: True})
    extra_hosts: tuple[ExtraHost, ...] = dataclasses.field(default=(),
                                                          metadata={_OMIT_DEFAULT: True})
    line: int = dataclasses.field(default=0, compare=False)

    def inputs(self) -> tuple[Op, ...]:
        """See :class:`Op`."""
        return (self.base, *(m.source for m in self.mounts if m.source is not None))


@dataclasses.dataclass(frozen=True)
class CopyOp(Op):
    """COPY/ADD: ``spec`` carried out from ``source``'s filesystem onto ``base``'s.

    ``cacheable`` is False for an ADD of a URL without ``--checksum``, whose content can
    change at any time: such an op always runs."""

    base: Op
    source: Op
    spec: CopySpec
    cacheable: bool = True
    line: int = dataclasses.field(default=0, compare=False)

    def inputs(self) -> tuple[Op, ...]:
        """See :class:`Op`."""
        return (self.base, self.source)


@dataclasses.dataclass(frozen=True)
class MkdirOp(Op):
    """WORKDIR: make ``path`` (and missing parents) owned by ``user`` if it is missing."""

    base: Op
    path: str
    user: str
    line: int = dataclasses.field(default=0, compare=False)

    def inputs(self) -> tuple[Op, ...]:
        """See :class:`Op`."""
        return (self.base,)


@dataclasses.dataclass(frozen=True)
class MergeOp(Op):
    """``COPY --link``: the layers ``upper`` made on an empty filesystem, stacked on
    ``base`` as they are. ``upper``'s result does not depend on ``base``, so a changed base
    reuses it (BuildKit's merge of a diff)."""

    base: Op
    upper: Op
    line: int = dataclasses.field(default=0, compare=False)

    def inputs(self) -> tuple[Op, ...]:
        """See :class:`Op`."""
        return (self.base, self.upper)


FsOp = Exec | CopyOp | MkdirOp | MergeOp
SourceOp = ScratchSource | ImageSource | ContextSource


def walk(roots: tuple[Op, ...]) -> list[Op]:
    """Every op ``roots`` reach, each once, inputs before the ops that read them."""
    seen: dict[str, Op] = {}
    stack: list[tuple[Op, bool]] = [(r, False) for r in reversed(roots)]
    while stack:
        op, expanded = stack.pop()
        if op.digest in seen:
            continue
        if expanded:
            seen[op.digest] = op
            continue
        stack.append((op, True))
        stack.extend((i, False) for i in reversed(op.inputs()) if i.digest not in seen)
    return list(seen.values())


def context_paths(op: Op) -> tuple[str, ...]:
    """The context paths (patterns) ``op`` reads, for the content hash in its cache key."""
    if isinstance(op, CopyOp) and isinstance(op.source, ContextSource):
        names = {name for name, _ in op.spec.heredocs}
        return tuple(s for s in op.spec.sources if s not in names
                     and not s.startswith(("http://", "https://")))
    if isinstance(op, Exec):
        return tuple(m.spec.source or "." for m in op.mounts
                     if isinstance(m.spec, BindSpec) and isinstance(m.source, ContextSource))
    return ()

