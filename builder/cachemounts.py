"""Cache mounts that travel with the remote cache (``--cache-to ...,cache-mounts=true``).

BuildKit keeps the contents of ``RUN --mount=type=cache`` directories on the machine that
made them, so a fresh CI runner downloads every package again. pybuild's cache export can
carry them: each cache id the build's RUN steps mount becomes one more layer of the cache
manifest (its directory as a tar, zstd-compressed), listed in the cache config by id. On
another machine, a RUN that must run again and mounts an id whose directory does not exist
yet there gets it filled from the first ``--cache-from`` source that has it, before the
step runs. Steps answered from the cache restore nothing.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from builder.errors import BuildError
from builder.graph.mounts import CacheMount
from builder.graph.ops import Exec, Op
from builder.remotecache import CachedMount, CacheSource
from builder.runmounts import cache_dir_name
from builder.store import BuildStore
from layerstore.diff import apply_layer, write_tree
from layerstore.errors import LayerstoreError

__all__ = ["cache_ids", "cache_mount_dir", "export_cache_mounts", "restorer"]


def cache_mount_dir(store: BuildStore, cache_id: str) -> Path:
    """Where the contents of cache mount ``cache_id`` live in ``store``."""
    return store.cache_mounts / cache_dir_name(cache_id)


def cache_ids(ops: Iterable[Op]) -> list[str]:
    """The ids of the cache mounts (of their own, not seeded ``from=``) the RUN steps among
    ``ops`` mount, in order."""
    ids: dict[str, None] = {}
    for op in ops:
        if isinstance(op, Exec):
            for m in op.mounts:
                if isinstance(m.spec, CacheMount) and m.spec.from_ is None:
                    ids.setdefault(m.spec.id)
    return list(ids)


def _tree_size(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def export_cache_mounts(store: BuildStore, ids: Sequence[str], limit: int,
                        warn: Callable[[str], None]) -> list[CachedMount]:
    """Each of ``ids`` whose directory exists as a layer in the store, taken under the id's
    lock (no build writes it meanwhile); an id over ``limit`` bytes is left out with a
    warning."""
    out = []
    for cache_id in ids:
        directory = cache_mount_dir(store, cache_id)
        if not directory.is_dir():
            continue
        lock_path = directory.with_name(directory.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = _tree_size(directory)
            if size > limit:
                warn(f"cache mount {cache_id!r} is {size} bytes, over cache-mounts-max-size "
                     f"({limit}); not exported")
                continue
            try:
                layer = write_tree(directory, store.content, "zstd")
            except (LayerstoreError, OSError) as exc:
                raise BuildError(f"cannot export cache mount {cache_id!r}: {exc}") from None
        finally:
            os.close(fd)
        out.append(CachedMount(cache_id, layer, size))
    return out


def restorer(store: BuildStore, sources: Sequence[CacheSource],
             log: Callable[[str], None]) -> Callable[[str, Path], None] | None:
    """What fills a new cache directory from the imported caches (None without any): given
    the id and the new, empty directory, it unpacks the first exported copy found."""
    if not sources:
        return None

    def restore(cache_id: str, directory: Path) -> None:
        for source in sources:
            found = source.mount(cache_id)
            if found is None:
                continue
            try:
                source.fetch(store, [found.layer])
                apply_layer(store.content, found.layer.descriptor, directory)
            except (LayerstoreError, OSError) as exc:
                raise BuildError(f"cannot restore cache mount {cache_id!r}: {exc}") from None
            log(f"restored cache mount {cache_id!r} ({found.size} bytes)")
            return

    return restore
