"""Layers from directories, and layers applied to directories.

Writing streams in one pass: tar bytes → sha256 (diff_id) → compressor → hash (blob digest)
→ content-store ingest, committed with the computed digest. Nothing is held in memory or
read twice. Three sources:

- :func:`write_tree`: a whole directory tree (e.g. an imported rootfs);
- :func:`write_upper`: an overlayfs upper directory (0/0 character devices become
  ``.wh.<name>``; opaque directories get a ``.wh..wh..opq`` entry after themselves);
- :func:`write_diff`: a generic comparison of two trees, deletions as whiteouts.

Applying (:func:`apply_layer`, :func:`apply_stream`) detects the compression from magic
bytes, extracts safely below the root (see :mod:`layerstore.archive`) and returns the
diff_id; :func:`apply_layer` also verifies the blob digest and size while reading. The
blob is checked only once it has been read through, so on :class:`DigestMismatch` the root
holds a partial extraction that the caller must discard.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from layerstore.archive import whiteout as wh
from layerstore.archive.reader import Applier, TarReader
from layerstore.archive.writer import TarWriter, all_xattrs, children, read_xattrs, walk
from layerstore.compression import ByteSource, decompress_reader
from layerstore.content.store import ContentStore
from layerstore.digest import CHUNK, Digest, new_hasher
from layerstore.errors import (
    DigestMismatch,
    FailedPrecondition,
    InvalidArgument,
    LayerstoreError,
    NotFound,
    SizeMismatch,
)
from layerstore.layerblob import Layer, LayerBlobWriter
from layerstore.oci import Descriptor

_WHITEOUT = wh.WHITEOUT_PREFIX.encode()
_OPAQUE = wh.OPAQUE_MARKER.encode()
_DEPENDENT_XATTRS = frozenset(prefix + name for prefix in (b"trusted.overlay.", b"user.overlay.")
                              for name in (b"redirect", b"metacopy"))


def _write_layer(produce: Callable[[TarWriter], None], store: ContentStore, compression: str,
                 docker_media_type: bool, source_date_epoch: int | None,
                 level: int | None) -> Layer:
    if source_date_epoch is not None and source_date_epoch < 0:
        raise InvalidArgument(f"source_date_epoch must be >= 0, got {source_date_epoch}")
    with LayerBlobWriter(store, compression, docker_media_type=docker_media_type,
                         level=level) as sink:
        tar = TarWriter(sink.write, source_date_epoch=source_date_epoch)
        try:
            produce(tar)
            tar.close()
        except OSError as exc:
            where = os.fsdecode(exc.filename) if exc.filename is not None else "the tree"
            raise FailedPrecondition(f"cannot archive {where!r}: {exc.strerror or exc}") from exc
        return sink.finish()


def _tree_root(path: Path | str, what: str) -> bytes:
    root = os.fsencode(path)
    try:
        st = os.stat(root)
    except FileNotFoundError:
        raise NotFound(f"{what} {os.fsdecode(root)!r} does not exist") from None
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"{what} {os.fsdecode(root)!r} is not a directory")
    return root


def write_tree(root: Path, store: ContentStore, compression: str = "gzip", *,
               docker_media_type: bool = False, source_date_epoch: int | None = None,
               level: int | None = None) -> Layer:
    """A whole directory tree as one layer (e.g. importing a rootfs); ``root`` itself is
    not an entry."""
    top = _tree_root(root, "tree")

    def produce(tar: TarWriter) -> None:
        for name, path, st in walk(top):
            tar.add(name, path, st)

    return _write_layer(produce, store, compression, docker_media_type, source_date_epoch,
                        level)


def write_upper(upperdir: Path, store: ContentStore, compression: str = "gzip", *,
                docker_media_type: bool = False, source_date_epoch: int | None = None,
                level: int | None = None) -> Layer:
    """An overlay upperdir as a layer: 0/0 char devices → ``.wh.<name>``; opaque dirs →
    the directory followed by its ``.wh..wh..opq`` entry.

    Upper directories that depend on their lower layers (``redirect_dir`` or ``metacopy``
    xattrs) raise :class:`FailedPrecondition`: mount with ``redirect_dir=off,metacopy=off``.
    """
    top = _tree_root(upperdir, "upperdir")
    opaque_key = wh.opaque_xattr().encode()

    def produce(tar: TarWriter) -> None:
        if wh.is_overlay_opaque(top):
            tar.add_whiteout(_OPAQUE)
        for name, path, st in walk(top):
            if wh.is_overlay_whiteout(st):
                head, _, base = name.rpartition(b"/")
                tar.add_whiteout((head + b"/" if head else b"") + _WHITEOUT + base)
                continue
            xattrs = all_xattrs(path)
            opaque = False
            for key, value in xattrs:
                if key in _DEPENDENT_XATTRS:
                    raise FailedPrecondition(
                        f"upperdir entry {os.fsdecode(name)!r} has {os.fsdecode(key)}: the "
                        "overlay was mounted with redirect_dir/metacopy; its changes cannot "
                        "be read from the upperdir alone"
                    )
                if key == opaque_key and value == b"y":
                    opaque = stat.S_ISDIR(st.st_mode)
            tar.add(name, path, st, [(k, v) for k, v in xattrs if not wh.is_overlay_xattr(k)])
            if opaque:
                tar.add_whiteout(name + b"/" + _OPAQUE)

    return _write_layer(produce, store, compression, docker_media_type, source_date_epoch,
                        level)


def write_diff(lower: Path, upper: Path, store: ContentStore, compression: str = "gzip", *,
               docker_media_type: bool = False, source_date_epoch: int | None = None,
               level: int | None = None) -> Layer:
    """The changes from tree ``lower`` to tree ``upper`` as a layer.

    An object is changed when its type, mode, uid/gid, xattrs, size, mtime, link target or
    device number differ; a regular file whose mtime has no sub-second part in both trees
    (as after extraction from a tar) is also compared by content. Parent directories of
    every change are included; deletions become whiteouts.
    """
    low = _tree_root(lower, "lower tree")
    up = _tree_root(upper, "upper tree")
    return _write_layer(lambda tar: _DiffWalk(tar).run(low, up), store, compression,
                        docker_media_type, source_date_epoch, level)


_Item = tuple[bytes, os.stat_result]


def _merged(lower: bytes | None, upper: bytes, prefix: bytes
            ) -> Iterator[tuple[bytes, bytes, _Item | None, _Item | None]]:
    """``(name, base, lower, upper)`` for every name of both directories, sorted."""
    ups = {full[len(prefix):]: (path, st) for full, path, st in children(upper, prefix)}
    lows = ({} if lower is None else
            {full[len(prefix):]: (path, st) for full, path, st in children(lower, prefix)})
    for base in sorted(ups.keys() | lows.keys()):
        yield prefix + base, base, lows.get(base), ups.get(base)


class _Frame:
    __slots__ = ("emitted", "items", "name", "path", "st")

    def __init__(self, items: Iterator[tuple[bytes, bytes, _Item | None, _Item | None]],
                 name: bytes, path: bytes, st: os.stat_result | None, emitted: bool) -> None:
        self.items = items
        self.name = name
        self.path = path
        self.st = st
        self.emitted = emitted


class _DiffWalk:
    """Walks two trees in step, writing the changes (containerd's double walk)."""

    def __init__(self, tar: TarWriter) -> None:
        self.tar = tar
        self.stack: list[_Frame] = []
        self.unchanged_links: dict[tuple[int, int], list[bytes]] = {}

    def run(self, lower: bytes, upper: bytes) -> None:
        self.stack = [_Frame(_merged(lower, upper, b""), b"", upper, None, True)]
        while self.stack:
            item = next(self.stack[-1].items, None)
            if item is None:
                self.stack.pop()
                continue
            name, base, low, up = item
            if up is None:
                self._parents()
                self.tar.add_whiteout(name[: len(name) - len(base)] + _WHITEOUT + base)
                continue
            path, st = up
            changed = low is None or not _same(low, up)
            if changed:
                self._parents()
            self._emit(name, path, st, changed)
            if stat.S_ISDIR(st.st_mode):
                lower_dir = low[0] if low is not None and stat.S_ISDIR(low[1].st_mode) else None
                self.stack.append(_Frame(_merged(lower_dir, path, name + b"/"), name, path, st,
                                         changed))

    def _parents(self) -> None:
        for frame in self.stack[1:]:
            if not frame.emitted:
                assert frame.st is not None
                self.tar.add(frame.name, frame.path, frame.st)
                frame.emitted = True

    def _emit(self, name: bytes, path: bytes, st: os.stat_result, changed: bool) -> None:
        if stat.S_ISDIR(st.st_mode) or st.st_nlink < 2:
            if changed:
                self.tar.add(name, path, st)
            return
        source = self.tar.link_source(st)
        if source is not None:
            self._parents()
            self.tar.add_link(name, source, st)
            return
        key = (st.st_dev, st.st_ino)
        if not changed:
            self.unchanged_links.setdefault(key, []).append(name)
            return
        self.tar.add(name, path, st)
        for other in self.unchanged_links.pop(key, []):
            self.tar.add_link(other, name, st)


def _same(low: _Item, up: _Item) -> bool:
    lpath, a = low
    upath, b = up
    if (a.st_mode, a.st_uid, a.st_gid) != (b.st_mode, b.st_uid, b.st_gid):
        return False
    fmt = stat.S_IFMT(a.st_mode)
    if fmt in (stat.S_IFCHR, stat.S_IFBLK) and a.st_rdev != b.st_rdev:
        return False
    if read_xattrs(lpath) != read_xattrs(upath):
        return False
    if a.st_mtime_ns // 1_000_000_000 != b.st_mtime_ns // 1_000_000_000:
        return False
    if fmt == stat.S_IFDIR:
        return True
    if a.st_size != b.st_size:
        return False
    if fmt == stat.S_IFLNK:
        return os.readlink(lpath) == os.readlink(upath)
    truncated = a.st_mtime_ns % 1_000_000_000 == 0 and b.st_mtime_ns % 1_000_000_000 == 0
    if not truncated:
        return a.st_mtime_ns == b.st_mtime_ns
    return fmt != stat.S_IFREG or _same_content(lpath, upath)


def _same_content(a: bytes, b: bytes) -> bool:
    with open(a, "rb", buffering=0) as fa, open(b, "rb", buffering=0) as fb:
        while True:
            chunk = fa.read(CHUNK)
            if chunk != fb.read(CHUNK):
                return False
            if not chunk:
                return True


class _VerifyingReader:
    """Counts and hashes the bytes read from a blob."""

    def __init__(self, raw: BinaryIO, algorithm: str) -> None:
        self._raw = raw
        self._hasher = new_hasher(algorithm)
        self._algorithm = algorithm
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._hasher.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def digest(self) -> Digest:
        return Digest(self._algorithm, self._hasher.hexdigest())


def _extract(stream: ByteSource, root: Path | str, overlay: bool) -> Digest:
    target = _tree_root(root, "extraction root")
    reader = TarReader(decompress_reader(stream))
    Applier(os.fsdecode(target), overlay=overlay).apply(reader)
    return reader.finish()


def apply_layer(store: ContentStore, descriptor: Descriptor, root: Path, *,
                overlay: bool = False) -> Digest:
    """Extract the layer blob ``descriptor`` from ``store`` into ``root``; return its diff_id.

    Compression is detected from the magic bytes; the blob digest and size are verified as
    it is read (:class:`DigestMismatch`, :class:`SizeMismatch`). ``overlay=False``: whiteouts
    delete, and ``.wh..wh..opq`` empties its directory of entries from lower layers (entries
    this layer wrote stay). ``overlay=True``: ``root`` is an overlay upperdir and whiteouts
    are written in overlay form (0/0 character devices, ``trusted.overlay.opaque=y``).
    """
    with store.reader(descriptor.digest) as raw:
        blob = _VerifyingReader(raw, descriptor.digest.algorithm)
        try:
            diff_id = _extract(blob, root, overlay)
        except LayerstoreError as exc:
            blob.drain()
            if blob.digest() != descriptor.digest:
                raise DigestMismatch(
                    f"layer {descriptor.digest}: content hashes to {blob.digest()} "
                    f"(extraction failed first: {exc})"
                ) from exc
            raise
        blob.drain()
    if blob.digest() != descriptor.digest:
        raise DigestMismatch(f"layer {descriptor.digest}: content hashes to {blob.digest()}")
    if blob.size != descriptor.size:
        raise SizeMismatch(
            f"layer {descriptor.digest}: descriptor says {descriptor.size} bytes, "
            f"blob has {blob.size}"
        )
    return diff_id


def apply_stream(stream: BinaryIO, root: Path, *, overlay: bool = False) -> Digest:
    """Extract a layer tar read from ``stream`` (compressed or not: detected) into ``root``;
    return its diff_id. Whiteouts as in :func:`apply_layer`."""
    return _extract(stream, root, overlay)
