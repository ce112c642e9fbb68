"""Cache keys of ops and the lookups behind them (the local cache, then imported caches).

An op's key is its digest, the keys of the ops it reads (for an image: the manifest digest
it resolved to) and a content hash of the context files it reads (COPY sources, bind-mount
sources), so the same op on the same inputs is the same key on any machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.frontend.dockerignore import DockerIgnore
from builder.graph.mounts import BindSpec
from builder.graph.ops import ContextSource, CopyOp, Exec, FsOp
from builder.remotecache import CachedStep, CacheSource
from builder.solver.cache import CacheRecord, cache_key
from builder.solver.contenthash import sources_digest
from builder.solver.contexts import NamedRoots, context_root
from builder.solver.results import OpResult
from builder.store import BuildStore, snapshot_exists, unpack_layers


@dataclass(frozen=True)
class OpCache:
    """The caches one build reads and writes."""

    store: BuildStore
    context: Path
    ignore: DockerIgnore
    file: str
    remote: tuple[CacheSource, ...] = ()
    named: NamedRoots = field(default_factory=dict)

    def key(self, op: FsOp, inputs: Sequence[OpResult]) -> str:
        """The cache key of ``op`` reading ``inputs`` (in ``op.inputs()`` order)."""
        material: dict[str, Any] = {"op": op.digest, "inputs": [r.key for r in inputs[1:]]}
        if isinstance(op, CopyOp) and isinstance(op.source, ContextSource):
            names = {name for name, _ in op.spec.heredocs}
            local = [s for s in op.spec.sources if s not in names
                     and not s.startswith(("http://", "https://"))]
            if local:
                root, ignore = context_root(self.context, self.ignore, self.named, op.source)
                material["content"] = sources_digest(
                    root, local, ignore=ignore, context=True, line=op.line,
                    file=self.file, instruction=op.spec.instruction)
        elif isinstance(op, Exec):
            material["content"] = [
                self._bind_digest(m.source, m.spec.source or ".", op.line)
                for m in op.mounts
                if isinstance(m.spec, BindSpec) and isinstance(m.source, ContextSource)]
        return cache_key(inputs[0].key, material)

    def _bind_digest(self, source: ContextSource, path: str, line: int) -> str:
        """The hash of what a bind mount of ``path`` in ``source`` shows: the build context
        with its ignore rules applied, a named local context as it is."""
        root, ignore = context_root(self.context, self.ignore, self.named, source)
        return sources_digest(root, [path], context=True, line=line, file=self.file,
                              instruction="RUN --mount",
                              ignore=ignore if source.name == ContextSource().name else None)

    def local(self, key: str, base: OpResult) -> OpResult | None:
        """The result a step with ``key`` left in this store, if its snapshot and layer blob
        are still there."""
        record = self.store.cache.get(key)
        if record is None:
            return None
        if record.layer is None:
            return OpResult(key, base.layers, base.chain, record.created, True, True)
        if record.chain is None or not snapshot_exists(self.store, record.chain) or \
                not self.store.content.exists(record.layer.descriptor.digest):
            return None
        return OpResult(key, (*base.layers, record.layer), record.chain, record.created, False,
                        True)

    def remote_step(self, key: str) -> tuple[CacheSource, CachedStep] | None:
        """The first imported cache holding ``key``, with its step."""
        for source in self.remote:
            step = source.lookup(key)
            if step is not None:
                return source, step
        return None

    def imported(self, key: str, base: OpResult) -> OpResult | None:
        """A step taken from an imported cache: the blobs of its layer stack fetched and
        unpacked (each layer once, by chainID), and remembered in the local cache."""
        found = self.remote_step(key)
        if found is None:
            return None
        source, step = found
        source.fetch(self.store, step.layers)
        if step.empty:
            result = OpResult(key, base.layers, base.chain, step.created, True, True)
        else:
            chain = unpack_layers(self.store, [x.descriptor for x in step.layers],
                                  [x.diff_id for x in step.layers])
            result = OpResult(key, tuple(step.layers), chain, step.created, False, True)
        self.remember(result)
        return result

    def remember(self, result: OpResult) -> None:
        """Record a step in the local cache."""
        self.store.cache.put(CacheRecord(result.key, result.chain,
                                         None if result.empty else result.layers[-1],
                                         result.created))

    def config_created(self, key: str, use: bool) -> str | None:
        """When the config step ``key`` was first made, if a cache knows it (``use``: may
        the cache be read)."""
        created = None
        if use:
            record = self.store.cache.get(key)
            if record is not None:
                created = record.created
            elif (remote := self.remote_step(key)) is not None:
                created = remote[1].created
        return created
