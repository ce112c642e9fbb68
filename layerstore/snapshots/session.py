"""Using a snapshot for the length of a ``with`` block: :func:`mounted_snapshot`.

Lifecycle of one use::

    prepare(key, parent)        an active (writable) snapshot on top of committed ``parent``
      or view(key, parent)      a read-only view of it (``readonly=True``)
    mount on the target         a fresh temporary directory unless a target is given
    yield the mount path        the caller reads or changes the tree
    unmount                     always: normal exit, exception, KeyboardInterrupt
    remove(key)                 always, unless ``keep=True`` and the block ended normally;
                                then the caller commits (or removes) ``key`` itself

A failure part-way (the prepare or the mount) undoes what was done before it, so no snapshot
key, mount or temporary directory outlives the block on any path but ``keep=True``'s.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from layerstore.errors import NotFound
from layerstore.snapshots.mount import mounted
from layerstore.snapshots.snapshotter import Snapshotter

__all__ = ["mounted_snapshot"]


@contextmanager
def mounted_snapshot(
    snapshotter: Snapshotter,
    key: str,
    parent: str | None = None,
    *,
    readonly: bool = False,
    target: str | os.PathLike[str] | None = None,
    temp_dir: str | os.PathLike[str] | None = None,
    labels: Mapping[str, str] | None = None,
    keep: bool = False,
) -> Iterator[Path]:
    """Prepare (or with ``readonly`` view) snapshot ``key`` on ``parent``, mount it and yield
    the mount path; see the module docstring for the lifecycle.

    ``target`` is the mount point to use; without one a fresh directory is made in
    ``temp_dir`` (the system's temporary directory if None) and removed afterwards.
    """
    make = snapshotter.view if readonly else snapshotter.prepare
    mounts = make(key, parent, labels)
    completed = False
    try:
        made_dir = target is None and temp_dir is not None
        point = tempfile.mkdtemp(prefix="snapshot-", dir=temp_dir) if made_dir else target
        try:
            with mounted(mounts, point) as root:
                yield root
            completed = True
        finally:
            if made_dir:
                assert point is not None
                with contextlib.suppress(OSError):
                    os.rmdir(point)
    finally:
        if not (keep and completed):
            with contextlib.suppress(NotFound, OSError):
                snapshotter.remove(key)
