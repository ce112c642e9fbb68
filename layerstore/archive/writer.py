"""The one tar writer: layer tars, image archives (OCI layout, docker-archive) and
filesystem exports are all written by :class:`TarWriter`.

Output follows what containerd and BuildKit write: PAX format (a PAX extended header only
when a field does not fit USTAR or xattrs are present), names relative without ``./``,
directory names ending in ``/``, numeric uid/gid with empty user and group names, mode
without file-type bits, mtimes truncated to whole seconds (clamped to SOURCE_DATE_EPOCH when
given), no atime/ctime, hardlinks as links to the first name of the inode, xattrs as
``SCHILY.xattr.*`` records. The archive ends with two zero blocks, without record padding.

Bytes go to a sink in blocks of about 1 MiB; file bodies are read straight into the
block buffer.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Callable, Iterator
from typing import BinaryIO

from layerstore.archive.whiteout import is_overlay_xattr
from layerstore.errors import FailedPrecondition

BLOCK = 512
RECORD_SIZE = 20 * BLOCK
BUFFER_SIZE = 1 << 20
TYPE_REG = b"0"
TYPE_LINK = b"1"
TYPE_SYMLINK = b"2"
TYPE_CHAR = b"3"
TYPE_BLOCK = b"4"
TYPE_DIR = b"5"
TYPE_FIFO = b"6"
TYPE_PAX = b"x"

_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s12x")
_MAX_OCTAL_7 = 8**7 - 1
_MAX_OCTAL_11 = 8**11 - 1
_NOATIME = getattr(os, "O_NOATIME", 0)
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_ZERO_BLOCKS = bytes(2 * BLOCK)
_TYPEFLAGS = {
    stat.S_IFREG: TYPE_REG, stat.S_IFDIR: TYPE_DIR, stat.S_IFLNK: TYPE_SYMLINK,
    stat.S_IFCHR: TYPE_CHAR, stat.S_IFBLK: TYPE_BLOCK, stat.S_IFIFO: TYPE_FIFO,
}

Sink = Callable[[memoryview], object]


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\x00" % (width - 1, value)


def encode_header(
    name: bytes,
    typeflag: bytes,
    *,
    mode: int = 0,
    uid: int = 0,
    gid: int = 0,
    size: int = 0,
    mtime: int = 0,
    linkname: bytes = b"",
    devmajor: int = 0,
    devminor: int = 0,
    xattrs: list[tuple[bytes, bytes]] | None = None,
    device_fields: bool = True,
) -> bytes:
    """The header block(s) of one entry, preceded by a PAX header when one is needed.

    Without ``device_fields`` the device number fields are left empty (NUL), as Python's
    ``tarfile`` writes them for entries that are not devices.
    """
    pax: list[tuple[bytes, bytes]] = []
    if len(name) > 100 or not name.isascii():
        pax.append((b"path", name))
    if len(linkname) > 100 or not linkname.isascii():
        pax.append((b"linkpath", linkname))
    if not 0 <= size <= _MAX_OCTAL_11:
        pax.append((b"size", str(size).encode()))
        size_field = 0
    else:
        size_field = size
    if not 0 <= mtime <= _MAX_OCTAL_11:
        pax.append((b"mtime", str(mtime).encode()))
        mtime_field = 0
    else:
        mtime_field = mtime
    if not 0 <= uid <= _MAX_OCTAL_7:
        pax.append((b"uid", str(uid).encode()))
        uid = 0
    if not 0 <= gid <= _MAX_OCTAL_7:
        pax.append((b"gid", str(gid).encode()))
        gid = 0
    if xattrs:
        pax.extend((b"SCHILY.xattr." + key, value) for key, value in xattrs)
    block = _pack(name, typeflag, mode, uid, gid, size_field, mtime_field, linkname,
                  devmajor, devminor, device_fields)
    if not pax:
        return block
    pax.sort()
    data = b"".join(_pax_record(key, value) for key, value in pax)
    base = name.rstrip(b"/")
    head, _, tail = base.rpartition(b"/")
    pax_name = (head + b"/" if head else b"") + b"PaxHeaders.0/" + tail
    pax_name = bytes(c for c in pax_name if c < 128)[:100]
    pad = -len(data) % BLOCK
    return b"".join((_pack(pax_name, TYPE_PAX, 0, 0, 0, len(data), 0, b"", 0, 0), data,
                     bytes(pad), block))


def _pack(name: bytes, typeflag: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
          linkname: bytes, devmajor: int, devminor: int, device_fields: bool = True) -> bytes:
    header = bytearray(_HEADER.pack(
        name[:100], _octal(mode, 8), _octal(uid, 8), _octal(gid, 8), _octal(size, 12),
        _octal(mtime, 12), b"        ", typeflag, linkname[:100], b"ustar\x00", b"00",
        b"", b"", _octal(devmajor, 8) if device_fields else b"",
        _octal(devminor, 8) if device_fields else b"", b"",
    ))
    header[148:156] = b"%06o\x00 " % sum(header)
    return bytes(header)


def all_xattrs(path: bytes | str) -> list[tuple[bytes, bytes]]:
    """Every xattr of ``path`` (not following symlinks), sorted by name."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []
    out = []
    for key in names:
        try:
            value = os.getxattr(path, key, follow_symlinks=False)
        except OSError:
            continue
        out.append((os.fsencode(key), value))
    out.sort()
    return out


def read_xattrs(path: bytes | str) -> list[tuple[bytes, bytes]]:
    """The xattrs of ``path`` that belong in a layer: all but overlayfs bookkeeping."""
    return [(k, v) for k, v in all_xattrs(path) if not is_overlay_xattr(k)]


def walk(root: bytes) -> Iterator[tuple[bytes, bytes, os.stat_result]]:
    """Every object below ``root`` (not ``root`` itself) as ``(name, path, lstat)``.

    Depth first, names sorted bytewise within each directory (the order of Go's
    ``filepath.Walk``), so ``a``, ``a/b``, ``a.txt``. ``name`` is relative to ``root``.
    """
    stack: list[Iterator[tuple[bytes, bytes, os.stat_result]]] = [_children(root, b"")]
    while stack:
        for name, path, st in stack[-1]:
            yield name, path, st
            if stat.S_ISDIR(st.st_mode):
                stack.append(_children(path, name + b"/"))
                break
        else:
            stack.pop()


def children(path: bytes, prefix: bytes) -> list[tuple[bytes, bytes, os.stat_result]]:
    """The sorted ``(name, path, lstat)`` of the entries of directory ``path``."""
    with os.scandir(path) as it:
        entries = sorted((e.name, e.path, e.stat(follow_symlinks=False)) for e in it)
    return [(prefix + name, full, st) for name, full, st in entries]


def _children(path: bytes, prefix: bytes) -> Iterator[tuple[bytes, bytes, os.stat_result]]:
    return iter(children(path, prefix))


class TarWriter:
    """Writes tar entries for filesystem objects into ``sink`` in ~1 MiB blocks.

    ``sink`` receives a memoryview it must consume before returning (it is reused).
    """

    def __init__(self, sink: Sink, *, source_date_epoch: int | None = None) -> None:
        self._sink = sink
        self._epoch = source_date_epoch
        self._buf = bytearray(BUFFER_SIZE)
        self._view = memoryview(self._buf)
        self._pos = 0
        self._links: dict[tuple[int, int], bytes] = {}
        self.size = 0

    def _mtime(self, st: os.stat_result) -> int:
        mtime = st.st_mtime_ns // 1_000_000_000
        if self._epoch is not None and mtime > self._epoch:
            return self._epoch
        return mtime

    def _put(self, data: bytes) -> None:
        n = len(data)
        if self._pos + n > BUFFER_SIZE:
            self._flush()
            if n > BUFFER_SIZE:
                self._sink(memoryview(data))
                self.size += n
                return
        self._buf[self._pos : self._pos + n] = data
        self._pos += n

    def _flush(self) -> None:
        if self._pos:
            self._sink(self._view[: self._pos])
            self.size += self._pos
            self._pos = 0

    def link_source(self, st: os.stat_result) -> bytes | None:
        """The entry name the inode of ``st`` was first written under, if any."""
        return self._links.get((st.st_dev, st.st_ino))

    def add_link(self, name: bytes, linkname: bytes, st: os.stat_result) -> None:
        """Add ``name`` as a hardlink to the earlier entry ``linkname`` (inode ``st``)."""
        self._put(encode_header(name, TYPE_LINK, mode=stat.S_IMODE(st.st_mode),
                                uid=st.st_uid, gid=st.st_gid, mtime=self._mtime(st),
                                linkname=linkname))

    def add(self, name: bytes, path: bytes, st: os.stat_result,
            xattrs: list[tuple[bytes, bytes]] | None = None) -> None:
        """Add the object at ``path`` (described by its lstat ``st``) as entry ``name``.

        ``xattrs`` are read from ``path`` unless given. Sockets are skipped. A second name
        of an inode already written becomes a hardlink.
        """
        mode = st.st_mode
        fmt = stat.S_IFMT(mode)
        typeflag = _TYPEFLAGS.get(fmt)
        if typeflag is None:
            return
        if fmt != stat.S_IFDIR and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self._links.get(key)
            if first is not None:
                self.add_link(name, first, st)
                return
            self._links[key] = name
        size = st.st_size if fmt == stat.S_IFREG else 0
        rdev = st.st_rdev if fmt in (stat.S_IFCHR, stat.S_IFBLK) else 0
        self._put(encode_header(
            name + b"/" if fmt == stat.S_IFDIR else name, typeflag, mode=stat.S_IMODE(mode),
            uid=st.st_uid, gid=st.st_gid, size=size, mtime=self._mtime(st),
            linkname=os.readlink(path) if fmt == stat.S_IFLNK else b"",
            devmajor=os.major(rdev), devminor=os.minor(rdev),
            xattrs=read_xattrs(path) if xattrs is None else xattrs,
        ))
        if size:
            self._body(path, size, name)

    def add_whiteout(self, name: bytes) -> None:
        """Add an empty whiteout file ``name`` (``.wh.<x>`` or ``.wh..wh..opq``).

        Its mtime is SOURCE_DATE_EPOCH when given, else 0, so that it is reproducible.
        """
        self._put(encode_header(name, TYPE_REG, mtime=self._epoch or 0))

    def add_directory(self, name: bytes, *, mode: int = 0o755, mtime: int = 0) -> None:
        """Add a directory entry ``name`` (owned by 0:0) that no file backs."""
        self._put(encode_header(name.rstrip(b"/") + b"/", TYPE_DIR, mode=mode, mtime=mtime,
                                device_fields=False))

    def add_data(self, name: bytes, data: bytes | BinaryIO, size: int | None = None, *,
                 mode: int = 0o644, mtime: int = 0) -> None:
        """Add a regular file ``name`` (owned by 0:0) holding ``data``: bytes, or ``size``
        bytes read from a binary stream (``FailedPrecondition`` if it ends early)."""
        if isinstance(data, bytes):
            size = len(data)
        if size is None:
            raise ValueError("add_data of a stream needs its size")
        self._put(encode_header(name, TYPE_REG, mode=mode, size=size, mtime=mtime,
                                device_fields=False))
        if isinstance(data, bytes):
            self._put(data)
        else:
            remaining = size
            while remaining:
                chunk = data.read(min(remaining, BUFFER_SIZE))
                if not chunk:
                    raise FailedPrecondition(
                        f"{os.fsdecode(name)!r} ended after {size - remaining} of {size} bytes"
                    )
                self._put(chunk)
                remaining -= len(chunk)
        pad = -size % BLOCK
        if pad:
            self._put(bytes(pad))

    def _body(self, path: bytes, size: int, name: bytes) -> None:
        try:
            fd = os.open(path, _OPEN_FLAGS | _NOATIME)
        except PermissionError:
            fd = os.open(path, _OPEN_FLAGS)
        try:
            remaining = size
            view = self._view
            while remaining:
                if self._pos == BUFFER_SIZE:
                    self._flush()
                want = min(remaining, BUFFER_SIZE - self._pos)
                got = os.readv(fd, [view[self._pos : self._pos + want]])
                if got == 0:
                    raise FailedPrecondition(
                        f"{os.fsdecode(name)!r} shrank while being archived "
                        f"({size - remaining} of {size} bytes read)"
                    )
                self._pos += got
                remaining -= got
        finally:
            os.close(fd)
        pad = -size % BLOCK
        if pad:
            self._put(bytes(pad))

    def close(self, *, record_size: int = 0) -> None:
        """Write the end-of-archive marker and flush everything to the sink.

        With ``record_size`` the archive is padded with zeros to a multiple of it
        (``RECORD_SIZE`` is the 10240 bytes that tar programs write by default).
        """
        self._put(_ZERO_BLOCKS)
        if record_size:
            pad = -(self.size + self._pos) % record_size
            if pad:
                self._put(bytes(pad))
        self._flush()
