"""Using a snapshot for the length of a ``with`` block: :func:`snapshot_session` and its
common case :func:`mounted_snapshot`.

Lifecycle of one use::

    prepare(key, parent)        an active (writable) snapshot on top of committed ``parent``
      or view(key, parent)      a read-only view of it (``readonly=True``)
    mount on the target         (``session.mounted()``; :func:`mounted_snapshot` always does)
                                a fresh temporary directory unless a target is given;
                                unmounted when its block ends, however it ends
    use the tree                through the mount, or the active snapshot's upperdir
    commit(name)                optional (``session.commit``): the active snapshot becomes
                                committed snapshot ``name`` and ``key`` is gone
    remove(key)                 always, unless committed, or kept (``session.keep()``,
                                ``keep=True``) and the block ended normally; a kept key is
                                the caller's to commit or remove

A failure part-way (the prepare or the mount) undoes what was done before it, so no snapshot
key, mount or temporary directory outlives the block on any path but a commit or a keep.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from layerstore.errors import AlreadyExists, NotFound
from layerstore.snapshots.mount import mounted
from layerstore.snapshots.snapshotter import Mount, Snapshotter

__all__ = ["SnapshotSession", "mounted_snapshot", "snapshot_session"]


class SnapshotSession:
    """An active snapshot or view made by :func:`snapshot_session`, for its ``with`` block."""

    def __init__(self, snapshotter: Snapshotter, key: str, mounts: list[Mount]) -> None:
        self.snapshotter = snapshotter
        self.key = key
        self.mounts = mounts
        self.committed: str | None = None
        self.kept = False

    @property
    def upperdir(self) -> Path:
        """The directory that holds the active snapshot's changes (see
        :meth:`Snapshotter.upperdir`); write to it only while it is not mounted."""
        return self.snapshotter.upperdir(self.key)

    @contextmanager
    def mounted(self, target: str | os.PathLike[str] | None = None,
                temp_dir: str | os.PathLike[str] | None = None) -> Iterator[Path]:
        """Mount the snapshot on ``target`` and yield the mount path; unmount when the block
        ends, however it ends.

        Without a target a fresh directory is made in ``temp_dir`` (the system's temporary
        directory if None) and removed afterwards.
        """
        made_dir = target is None and temp_dir is not None
        point = tempfile.mkdtemp(prefix="snapshot-", dir=temp_dir) if made_dir else target
        try:
            with mounted(self.mounts, point) as root:
                yield root
        finally:
            if made_dir:
                assert point is not None
                with contextlib.suppress(OSError):
                    os.rmdir(point)

    def commit(self, name: str, labels: Mapping[str, str] | None = None, *,
               exist_ok: bool = False) -> bool:
        """Commit the active snapshot as ``name`` (unmount it first); return True.

        With ``exist_ok`` a committed ``name`` that already exists (the same content, made
        by another build or thread) is not an error: nothing is committed, False is
        returned and the key is removed when the block ends.
        """
        try:
            self.snapshotter.commit(name, self.key, labels)
        except AlreadyExists:
            if not exist_ok:
                raise
            return False
        self.committed = name
        return True

    def keep(self) -> None:
        """Leave the key in place when the block ends normally (an error still removes it);
        the caller commits or removes it."""
        self.kept = True


@contextmanager
def snapshot_session(
    snapshotter: Snapshotter,
    key: str,
    parent: str | None = None,
    *,
    readonly: bool = False,
    labels: Mapping[str, str] | None = None,
) -> Iterator[SnapshotSession]:
    """Prepare (or with ``readonly`` view) snapshot ``key`` on ``parent`` and yield its
    :class:`SnapshotSession`; see the module docstring for the lifecycle.

    When the block ends the key is removed unless the session committed it, or kept it and
    the block ended normally.
    """
    make = snapshotter.view if readonly else snapshotter.prepare
    session = SnapshotSession(snapshotter, key, make(key, parent, labels))
    completed = False
    try:
        yield session
        completed = True
    finally:
        if session.committed is None and not (session.kept and completed):
            with contextlib.suppress(NotFound, OSError):
                snapshotter.remove(key)


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
    the mount path; unmount and remove it afterwards (with ``keep`` and a normal end the key
    stays for the caller to commit). ``target`` and ``temp_dir`` as in
    :meth:`SnapshotSession.mounted`.
    """
    with snapshot_session(snapshotter, key, parent, readonly=readonly,
                          labels=labels) as session:
        with session.mounted(target, temp_dir) as root:
            yield root
        if keep:
            session.keep()
