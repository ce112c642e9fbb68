"""Local tar archives of ADD: detection and safe extraction into a directory.

A file is an archive when, after transparent decompression (gzip, bzip2, xz, zstd or none,
detected from magic bytes), its first 512 bytes are a valid tar header; the file name
does not matter. Extraction follows BuildKit: the destination directory is the root of the
extraction (``..`` stops there, absolute and relative symlinks are resolved inside it), an
existing entry that is not a directory merging with a directory is replaced, missing parent
directories are made with mode 0755 and owner 0:0, entries keep the owner, mode and mtime of
the archive unless ``--chown`` gives an owner. ``.wh.`` names have no special meaning here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from builder.errors import DockerfileError
from layerstore.archive.reader import TarEntry, TarReader
from layerstore.archive.safepath import RootResolver
from layerstore.compression import decompress_reader
from layerstore.errors import LayerstoreError

__all__ = ["is_archive", "unpack"]

BLOCK = 512
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_IGNORED_XATTR_ERRNOS = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM)
_DEVICES = {b"3": stat.S_IFCHR, b"4": stat.S_IFBLK, b"6": stat.S_IFIFO}


@contextlib.contextmanager
def _decompressed(path: Path) -> Iterator[BinaryIO]:
    with open(path, "rb") as raw:
        yield decompress_reader(raw)


def _valid_header(block: bytes) -> bool:
    """True when ``block`` is a tar header with a correct checksum."""
    if len(block) < BLOCK or block == bytes(BLOCK):
        return False
    field = block[148:156].split(b"\x00", 1)[0].strip(b" ")
    try:
        stored = int(field, 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 256 + sum(block[156:])
    signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b > 127)
    return stored in (unsigned, signed)


def is_archive(path: Path) -> bool:
    """True when ``path`` is a regular file holding a (possibly compressed) tar archive."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        with _decompressed(path) as stream:
            head = b""
            while len(head) < BLOCK:
                data = stream.read(BLOCK - len(head))
                if not data:
                    break
                head += data
    except Exception:  # any decompression failure means "not an archive", as in BuildKit
        return False
    return _valid_header(head)


def _clean(name: str, archive: str) -> tuple[str, ...]:
    """The components of an entry name below the extraction root ('' parts dropped)."""
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise DockerfileError(
                    f"archive {archive}: entry {name!r} is outside the extraction root")
            parts.pop()
            continue
        parts.append(part)
    return tuple(parts)


class _Extractor:
    """Writes the entries of one archive below ``dest``."""

    def __init__(self, dest: Path, archive: str, owner: tuple[int, int] | None) -> None:
        self.paths = RootResolver(os.fspath(dest))
        self.archive = archive
        self.owner = owner
        self.dir_times: list[tuple[str, int]] = []

    def run(self, reader: TarReader) -> None:
        for entry in reader:
            parts = _clean(entry.name, self.archive)
            if not parts:
                continue
            self.paths.created.clear()
            parent = self.paths.directory(parts[:-1], entry.name, create=True)
            assert parent is not None
            try:
                for created in self.paths.created:
                    os.lchown(created, 0, 0)
                self._entry(entry, f"{parent}/{parts[-1]}", reader)
            except OSError as exc:
                raise DockerfileError(f"archive {self.archive}: entry {entry.name!r}: "
                                      f"{exc.strerror or exc}") from None
        times = dict(self.dir_times)
        for path in self.paths.still_real_dirs(list(reversed(times))):
            os.utime(path, ns=(times[path], times[path]), follow_symlinks=False)

    def _entry(self, entry: TarEntry, path: str, reader: TarReader) -> None:
        is_dir = entry.typeflag == b"5"
        try:
            st: os.stat_result | None = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None and not (is_dir and stat.S_ISDIR(st.st_mode)):
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(path)
            else:
                os.unlink(path)
            self.paths.invalidate()
        uid, gid = self.owner if self.owner is not None else (entry.uid, entry.gid)
        if is_dir:
            if st is None or not stat.S_ISDIR(st.st_mode):
                os.mkdir(path, 0o700)
            os.lchown(path, uid, gid)
            os.chmod(path, entry.mode)
            self._xattrs(path, entry)
            self.dir_times.append((path, entry.mtime_ns))
            return
        if entry.typeflag == b"0":
            fd = os.open(path, _WRITE_FLAGS, 0o600)
            try:
                def write(view: memoryview) -> None:
                    while view:
                        view = view[os.write(fd, view):]

                reader.copy_body(write, f"data of {entry.name!r}")
                os.fchown(fd, uid, gid)
                os.fchmod(fd, entry.mode)
            finally:
                os.close(fd)
        elif entry.typeflag == b"2":
            os.symlink(entry.linkname, path)
        elif entry.typeflag == b"1":
            self._hardlink(entry, path)
            return
        else:
            os.mknod(path, _DEVICES[entry.typeflag] | 0o600,
                     os.makedev(entry.devmajor, entry.devminor))
        symlink = entry.typeflag == b"2"
        os.lchown(path, uid, gid)
        if not symlink:
            os.chmod(path, entry.mode)
        self._xattrs(path, entry)
        os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)

    def _hardlink(self, entry: TarEntry, path: str) -> None:
        target = _clean(entry.linkname, self.archive)
        if not target:
            raise DockerfileError(f"archive {self.archive}: hardlink {entry.name!r} targets "
                                  "the extraction root")
        parent = self.paths.directory(target[:-1], entry.name, create=False)
        source = f"{parent}/{target[-1]}" if parent is not None else None
        if source is None or not os.path.lexists(source):
            raise DockerfileError(f"archive {self.archive}: hardlink {entry.name!r} points to "
                                  f"{entry.linkname!r}, which is not in the archive")
        if stat.S_ISDIR(os.lstat(source).st_mode):
            raise DockerfileError(f"archive {self.archive}: hardlink {entry.name!r} points to "
                                  f"the directory {entry.linkname!r}")
        os.link(source, path, follow_symlinks=False)

    @staticmethod
    def _xattrs(path: str, entry: TarEntry) -> None:
        for key, value in entry.xattrs:
            try:
                os.setxattr(path, key, value, follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in _IGNORED_XATTR_ERRNOS:
                    raise


def unpack(archive: Path, dest: Path, *, owner: tuple[int, int] | None = None,
           display_name: str | None = None) -> None:
    """Extract ``archive`` (see :func:`is_archive`) into the existing directory ``dest``.

    With ``owner`` every entry gets that ``(uid, gid)`` instead of the archive's. Damaged
    archives and entries that try to leave ``dest`` raise :class:`DockerfileError`.
    """
    name = display_name or archive.name
    try:
        with _decompressed(archive) as stream:
            reader = TarReader(stream)
            _Extractor(dest, name, owner).run(reader)
    except LayerstoreError as exc:
        raise DockerfileError(f"archive {name}: {exc}") from None
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise DockerfileError(f"archive {name}: {exc.strerror or exc}{where}") from None
