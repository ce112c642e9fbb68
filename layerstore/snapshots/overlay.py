"""The overlayfs snapshotter.

On disk, under ``root``::

    metadata.db            sqlite rows (see :mod:`layerstore.snapshots.metadata`)
    lock                   flock'd during every change, so processes sharing a root serialise
    snapshots/<id>/fs      the snapshot's own files: its overlay upper layer
    snapshots/<id>/work    the overlay work directory of an active snapshot

``<id>`` is the snapshot's small integer row id, so a chain of lower directories written
relative to ``snapshots/`` (``lowerdir=12/fs:11/fs:…``, with ``Mount.workdir`` set to that
directory) stays short enough for one page of mount options up to overlayfs's 500 layers.

Crash consistency: a snapshot's directory is built under a temporary name and renamed to
``<id>`` inside the transaction that inserts its row, before that transaction commits; a
removal deletes the row first and the directory afterwards. So a row always has its
directory, and whatever a crash leaves behind is a directory without a row, which
:meth:`OverlaySnapshotter.cleanup` (run on open) deletes.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from layerstore import syscalls
from layerstore.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from layerstore.fsutil import fsync_dir
from layerstore.snapshots.metadata import MetadataStore, SnapshotRecord, check_labels
from layerstore.snapshots.mount import MAX_MOUNT_DATA, parse_options
from layerstore.snapshots.snapshotter import Kind, Mount, SnapshotInfo, Usage
from layerstore.userns import in_user_namespace

#: overlayfs refuses more lower layers than this (``OVL_MAX_STACK``).
MAX_LAYERS = 500

#: Options of every read-write overlay: no inode index (so a committed layer may serve as a
#: lower layer of any later mount), and no redirects or metacopy, so the upper directory
#: always holds full files and plain whiteouts that a layer diff can read as they are.
OVERLAY_OPTIONS = ("index=off", "redirect_dir=off", "metacopy=off")

#: The same inside a user namespace (:mod:`layerstore.userns`): overlayfs keeps its xattrs
#: under ``user.overlay.`` (``userxattr``), which allows no redirects to be followed.
USERNS_OVERLAY_OPTIONS = ("userxattr", "index=off", "redirect_dir=nofollow", "metacopy=off")

def _syncfs(path: Path) -> None:
    """Flush the filesystem holding ``path`` to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            syscalls.syncfs(fd)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        os.close(fd)


def _escape(path: Path) -> str:
    """A path as overlayfs reads it inside its comma- and colon-separated options."""
    return str(path).replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


def _check_key(what: str, key: object) -> str:
    if not isinstance(key, str) or not key or "\0" in key:
        raise InvalidArgument(f"snapshot {what} {key!r} must be a non-empty string")
    return key


def _discard(path: Path) -> None:
    """Delete a directory tree that no row refers to any more; a failure is left to cleanup."""
    shutil.rmtree(path, ignore_errors=True)


class OverlaySnapshotter:
    """A :class:`~layerstore.snapshots.snapshotter.Snapshotter` on overlayfs.

    Mounts it returns:

    - active, no parent: ``bind`` of its ``fs`` (``rbind``, ``rw``);
    - active with parents: ``overlay`` with ``lowerdir`` = the parent chain nearest first
      (relative to ``Mount.workdir`` = ``<root>/snapshots``), absolute ``upperdir`` and
      ``workdir`` (with backslash, comma and colon escaped), plus :data:`OVERLAY_OPTIONS`
      (:data:`USERNS_OVERLAY_OPTIONS` inside a user namespace);
    - view of one layer: read-only bind of that layer's ``fs``;
    - view of a chain: read-only ``overlay`` with ``lowerdir`` only (and ``userxattr``
      inside a user namespace);
    - view of nothing: read-only bind of its own (empty) ``fs``.

    ``commit`` flushes the filesystem (``syncfs``) before the row turns committed, unless
    ``sync=False``. Labels given to ``commit`` are merged over the active snapshot's labels.
    The snapshotter is safe to share between threads.
    """

    def __init__(self, root: Path | str, *, sync: bool = True) -> None:
        """Open (creating if needed) the snapshotter at ``root`` and clean up after a crash."""
        self._root = Path(os.path.abspath(root))
        self._dirs = self._root / "snapshots"
        self._dirs.mkdir(parents=True, exist_ok=True)
        self._sync = sync
        self._mutex = threading.Lock()
        self._lockfd = os.open(self._root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._closed = False
        try:
            with self._locked(check_open=False):
                self._db = MetadataStore(self._root / "metadata.db")
                self._cleanup_locked()
        except BaseException:
            os.close(self._lockfd)
            raise

    @property
    def root(self) -> Path:
        """The directory holding the database and the snapshots."""
        return self._root

    def __enter__(self) -> OverlaySnapshotter:
        """Use as a context manager that closes on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close."""
        self.close()

    @contextmanager
    def _locked(self, check_open: bool = True) -> Iterator[None]:
        with self._mutex:
            if check_open and self._closed:
                raise FailedPrecondition(f"snapshotter at {self._root} is closed")
            fcntl.flock(self._lockfd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lockfd, fcntl.LOCK_UN)

    def _dir(self, sid: int) -> Path:
        return self._dirs / str(sid)

    def _get(self, key: str) -> SnapshotRecord:
        _check_key("key", key)
        with self._locked():
            return self._db.read().get(key)

    # -- inspection -------------------------------------------------------------------------

    def stat(self, key: str) -> SnapshotInfo:
        """Metadata of ``key``; ``NotFound`` if absent."""
        return self._get(key).info()

    def walk(self) -> Iterator[SnapshotInfo]:
        """Every snapshot, oldest first (a snapshot read before the iteration starts)."""
        with self._locked():
            records = self._db.read().all()
        return iter([r.info() for r in records])

    def upperdir(self, key: str) -> Path:
        """The ``fs`` directory of ``key`` (active, committed, or a view's empty one)."""
        return self._dir(self._get(key).id) / "fs"

    def usage(self, key: str) -> Usage:
        """Disk use of ``key``'s own layer.

        ``size`` is the allocated size (``st_blocks * 512``) of the regular files below
        ``fs``, each inode counted once however many hard links it has; ``inodes`` counts
        the distinct inodes below ``fs`` (files, directories, links, whiteouts), not ``fs``
        itself. An empty layer is ``Usage(0, 0)``.
        """
        fs = self.upperdir(key)
        seen: set[int] = set()
        size = 0
        stack = [str(fs)]
        while stack:
            try:
                entries = list(os.scandir(stack.pop()))
            except FileNotFoundError:
                continue
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if st.st_ino in seen:
                    continue
                seen.add(st.st_ino)
                if stat.S_ISREG(st.st_mode):
                    size += st.st_blocks * 512
                elif stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
        return Usage(size=size, inodes=len(seen))

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of active snapshot or view ``key``; a committed one has none."""
        _check_key("key", key)
        with self._locked():
            tx = self._db.read()
            rec = tx.get(key)
            if rec.kind is Kind.COMMITTED:
                raise FailedPrecondition(
                    f"snapshot {key!r} is committed and has no mounts; make a view of it"
                )
            parents = tx.chain(rec.parent_id) if rec.parent_id is not None else []
        return self._mounts(rec.kind, rec.name, rec.id, parents)

    # -- the mounts as data -------------------------------------------------------------------

    def _mounts(self, kind: Kind, key: str, sid: int, parents: list[SnapshotRecord]) -> list[Mount]:
        """Build (and size-check) the mounts of snapshot ``sid`` over ``parents``."""
        own = self._dir(sid)
        if len(parents) > MAX_LAYERS:
            raise InvalidArgument(
                f"snapshot {key!r}: a chain of {len(parents)} parent layers is more than the "
                f"{MAX_LAYERS} overlayfs can stack"
            )
        if kind is Kind.ACTIVE and not parents:
            return [Mount("bind", str(own / "fs"), ("rbind", "rw"))]
        if kind is Kind.VIEW and not parents:
            return [Mount("bind", str(own / "fs"), ("rbind", "ro"))]
        if kind is Kind.VIEW and len(parents) == 1:
            return [Mount("bind", str(self._dir(parents[0].id) / "fs"), ("rbind", "ro"))]
        lowerdir = "lowerdir=" + ":".join(f"{p.id}/fs" for p in parents)
        userns = in_user_namespace()
        if kind is Kind.VIEW:
            options: tuple[str, ...] = ("ro", "userxattr", lowerdir) if userns else ("ro", lowerdir)
        else:
            options = (
                *(USERNS_OVERLAY_OPTIONS if userns else OVERLAY_OPTIONS),
                lowerdir,
                f"upperdir={_escape(own / 'fs')}",
                f"workdir={_escape(own / 'work')}",
            )
        size = len(os.fsencode(parse_options(options).data))
        if size > MAX_MOUNT_DATA:
            raise InvalidArgument(
                f"snapshot {key!r}: the overlay options for {len(parents)} layers take {size} "
                f"bytes, more than the {MAX_MOUNT_DATA} one mount call accepts"
            )
        return [Mount("overlay", "overlay", options, workdir=str(self._dirs))]

    # -- changes ------------------------------------------------------------------------------

    def prepare(
        self, key: str, parent: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """Create active snapshot ``key`` on top of committed ``parent``; return its mounts."""
        return self._create(Kind.ACTIVE, key, parent, labels)

    def view(
        self, key: str, parent: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """Create read-only view ``key`` of committed ``parent``; return its mounts."""
        return self._create(Kind.VIEW, key, parent, labels)

    def _create(
        self, kind: Kind, key: str, parent: str | None, labels: Mapping[str, str] | None
    ) -> list[Mount]:
        _check_key("key", key)
        if parent is not None:
            _check_key("parent", parent)
        clean_labels = check_labels(labels)
        with self._locked():
            tmp: Path | None = None
            final: Path | None = None
            try:
                with self._db.transaction() as tx:
                    if tx.find(key) is not None:
                        raise AlreadyExists(f"snapshot {key!r} already exists")
                    parents: list[SnapshotRecord] = []
                    if parent is not None:
                        prec = tx.find(parent)
                        if prec is None:
                            raise NotFound(f"parent {parent!r} of snapshot {key!r} not found")
                        if prec.kind is not Kind.COMMITTED:
                            raise FailedPrecondition(
                                f"parent {parent!r} of snapshot {key!r} is {prec.kind.value}, "
                                "not committed"
                            )
                        parents = tx.chain(prec.id)
                    rec = tx.insert(key, kind, parents[0].id if parents else None, clean_labels)
                    mounts = self._mounts(kind, key, rec.id, parents)
                    tmp = Path(tempfile.mkdtemp(prefix="new-", dir=self._dirs))
                    os.chmod(tmp, 0o700)
                    (tmp / "fs").mkdir(0o755)
                    (tmp / "work").mkdir(0o700)
                    final = self._dir(rec.id)
                    if os.path.lexists(final):
                        _discard(final)  # left by a crash: no committed row has this id
                    os.rename(tmp, final)
                    fsync_dir(self._dirs)  # the rename is on disk before the row is
            except BaseException:
                if final is not None and final.exists():
                    _discard(final)
                elif tmp is not None:
                    _discard(tmp)
                raise
        return mounts

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Make active snapshot ``key`` the committed snapshot ``name``; ``key`` is gone."""
        _check_key("name", name)
        _check_key("key", key)
        clean_labels = check_labels(labels)
        if self._sync:
            rec = self._get(key)
            if rec.kind is Kind.ACTIVE:
                _syncfs(self._dir(rec.id))
        with self._locked(), self._db.transaction() as tx:
            tx.commit_active(key, name, clean_labels)

    def remove(self, key: str) -> None:
        """Delete ``key``; ``FailedPrecondition`` while another snapshot names it as parent."""
        _check_key("key", key)
        with self._locked():
            with self._db.transaction() as tx:
                rec = tx.get(key)
                children = tx.children(rec.id)
                if children:
                    shown = ", ".join(repr(c) for c in children[:5])
                    more = f" and {len(children) - 5} more" if len(children) > 5 else ""
                    raise FailedPrecondition(
                        f"snapshot {key!r} is the parent of {shown}{more}; remove those first"
                    )
                tx.delete(rec.id)
            trash = self._dirs / f"rm-{rec.id}"
            try:
                os.rename(self._dir(rec.id), trash)
            except FileNotFoundError:
                return
        _discard(trash)

    def cleanup(self) -> None:
        """Delete directories that no snapshot row refers to (left by a crash)."""
        with self._locked():
            self._cleanup_locked()

    def _cleanup_locked(self) -> None:
        live = {str(r.id) for r in self._db.read().all()}
        for entry in os.scandir(self._dirs):
            if entry.name not in live:
                if entry.is_dir(follow_symlinks=False):
                    _discard(Path(entry.path))
                else:
                    os.unlink(entry.path)

    def close(self) -> None:
        """Release the metadata database and the lock file; later calls fail."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            self._db.close()
            os.close(self._lockfd)
