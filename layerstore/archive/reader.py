"""Reading layer tars and applying them to a directory safely.

:class:`TarReader` parses a tar stream (USTAR, PAX, GNU long names; v7) strictly, hashing
every byte it reads so the caller gets the diff_id without a second pass. :class:`Applier`
extracts entries below a root: every path is resolved inside the root
(:mod:`layerstore.archive.safepath`), whiteouts delete or become overlayfs whiteouts
(:mod:`layerstore.archive.whiteout`), and metadata is applied after content, directory
mtimes last.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from layerstore.archive import whiteout as wh
from layerstore.archive.safepath import RootResolver, clean_entry_name, quote_name
from layerstore.digest import CHUNK, Digest, Hasher, new_hasher
from layerstore.errors import InvalidArgument, LayerstoreError, UnsafeLayer
from layerstore.userns import in_user_namespace

BLOCK = 512
MAX_META_SIZE = 1 << 20
_ZERO_BLOCK = bytes(BLOCK)
_REGULAR = (b"0", b"\x00", b"7")
_HEADER_ONLY = (b"1", b"2", b"3", b"4", b"5", b"6")
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_IGNORED_XATTR_ERRNOS = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM)


@dataclass(frozen=True, slots=True)
class TarEntry:
    """One tar entry with PAX/GNU extensions folded in. ``typeflag`` is normalised:
    regular files are ``b"0"``."""

    name: str
    typeflag: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    linkname: str
    devmajor: int
    devminor: int
    xattrs: tuple[tuple[str, bytes], ...]
    offset: int


def _corrupt(offset: int, problem: str) -> InvalidArgument:
    return InvalidArgument(f"corrupt layer tar at byte {offset}: {problem}")


def _cstring(field: bytes) -> bytes:
    end = field.find(b"\x00")
    return field if end < 0 else field[:end]


def _number(field: bytes, what: str, offset: int) -> int:
    if field and field[0] & 0x80:
        if field[0] == 0xFF:
            return int.from_bytes(field, "big", signed=True)
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = _cstring(field).strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise _corrupt(offset, f"invalid {what} field {field!r}") from None


def _pax_time_ns(value: str, offset: int) -> int:
    negative = value.startswith("-")
    whole, _, frac = value.lstrip("-").partition(".")
    try:
        ns = int(whole or "0") * 1_000_000_000 + int((frac + "000000000")[:9] or "0")
    except ValueError:
        raise _corrupt(offset, f"invalid PAX mtime {value!r}") from None
    return -ns if negative else ns


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _parse_pax(data: bytes, offset: int) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break
        space = data.find(b" ", pos)
        if space < 0:
            raise _corrupt(offset, "malformed PAX record (no length)")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise _corrupt(offset, "malformed PAX record length") from None
        end = pos + length
        if length <= space - pos + 1 or end > len(data) or data[end - 1 : end] != b"\n":
            raise _corrupt(offset, "malformed PAX record")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq:
            raise _corrupt(offset, "PAX record without '='")
        records[_decode(key)] = value
        pos = end
    return records


def is_tar_header(block: bytes) -> bool:
    """Whether ``block`` is a (non-zero) tar header block with a correct checksum."""
    if len(block) < BLOCK or block[:BLOCK] == _ZERO_BLOCK:
        return False
    try:
        TarReader._check_sum(block[:BLOCK], 0)
    except InvalidArgument:
        return False
    return True


class TarReader:
    """Iterates the entries of a tar stream; bodies are read with :meth:`copy_body`.

    Every byte read from ``source`` is hashed; after iteration ends (at the end-of-archive
    marker or a clean EOF) :meth:`finish` reads the rest of the stream and returns its
    digest, the diff_id of a layer. Malformed or truncated input raises InvalidArgument.
    """

    def __init__(self, source: BinaryIO, algorithm: str = "sha256") -> None:
        self._src = source
        self._hasher: Hasher = new_hasher(algorithm)
        self._algorithm = algorithm
        self._chunk = b""
        self._pos = 0
        self.consumed = 0
        self.total = 0
        self._remaining = 0
        self._padding = 0

    def _fill(self) -> bool:
        try:
            data = self._src.read(CHUNK)
        except LayerstoreError:
            raise
        except Exception as exc:
            raise _corrupt(self.total, f"cannot decompress: {exc}") from exc
        if not data:
            return False
        self._hasher.update(data)
        self.total += len(data)
        self._chunk = data
        self._pos = 0
        return True

    def _read(self, n: int, what: str) -> bytes:
        parts = []
        need = n
        while need:
            if self._pos >= len(self._chunk) and not self._fill():
                if need == n and what == "header":
                    return b""
                raise _corrupt(self.consumed, f"unexpected end of data in {what}")
            take = self._chunk[self._pos : self._pos + need]
            self._pos += len(take)
            self.consumed += len(take)
            need -= len(take)
            parts.append(take)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _chunks(self, n: int, what: str) -> Iterator[memoryview]:
        while n:
            if self._pos >= len(self._chunk) and not self._fill():
                raise _corrupt(self.consumed, f"unexpected end of data in {what}")
            take = min(n, len(self._chunk) - self._pos)
            yield memoryview(self._chunk)[self._pos : self._pos + take]
            self._pos += take
            self.consumed += take
            n -= take

    def copy_body(self, write: Callable[[memoryview], object], what: str) -> None:
        """Pass the current entry's remaining body to ``write`` in chunks."""
        remaining, self._remaining = self._remaining, 0
        for view in self._chunks(remaining, what):
            write(view)

    def _skip_body(self) -> None:
        for _ in self._chunks(self._remaining, "entry data"):
            pass
        self._remaining = 0
        if self._padding:
            self._read(self._padding, "entry padding")
            self._padding = 0

    def _meta_body(self, size: int, offset: int) -> bytes:
        if size > MAX_META_SIZE:
            raise _corrupt(offset, f"extended header of {size} bytes is too large")
        data = self._read(size, "extended header")
        self._read(-size % BLOCK, "extended header padding")
        return data

    def __iter__(self) -> Iterator[TarEntry]:
        pax: dict[str, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        while True:
            self._skip_body()
            offset = self.consumed
            block = self._read(BLOCK, "header")
            if not block or block == _ZERO_BLOCK:
                if pax or long_name is not None or long_link is not None:
                    raise _corrupt(offset, "extended header without the entry it describes")
                return
            self._check_sum(block, offset)
            typeflag = block[156:157]
            size = _number(block[124:136], "size", offset)
            if typeflag in (b"x", b"g", b"L", b"K"):
                data = self._meta_body(size, offset)
                if typeflag == b"x":
                    pax.update(_parse_pax(data, offset))
                elif typeflag == b"L":
                    long_name = _cstring(data)
                elif typeflag == b"K":
                    long_link = _cstring(data)
                else:
                    _parse_pax(data, offset)
                continue
            entry = self._entry(block, typeflag, size, offset, pax, long_name, long_link)
            pax, long_name, long_link = {}, None, None
            self._remaining = 0 if entry.typeflag in _HEADER_ONLY else entry.size
            self._padding = -self._remaining % BLOCK
            yield entry

    @staticmethod
    def _check_sum(block: bytes, offset: int) -> None:
        stored = _number(block[148:156], "checksum", offset)
        unsigned = sum(block[:148]) + 256 + sum(block[156:])
        if stored != unsigned:
            high = sum(1 for b in block[:148] if b > 127) + sum(1 for b in block[156:] if b > 127)
            if stored != unsigned - 256 * high:
                raise _corrupt(offset, "header checksum mismatch (not a tar, or damaged)")

    def _entry(self, block: bytes, typeflag: bytes, size: int, offset: int,
               pax: dict[str, bytes], long_name: bytes | None,
               long_link: bytes | None) -> TarEntry:
        name = _cstring(block[0:100])
        magic = block[257:263]
        if magic == b"ustar\x00":
            prefix = _cstring(block[345:500])
            if prefix:
                name = prefix + b"/" + name
        if long_name is not None:
            name = long_name
        linkname = long_link if long_link is not None else _cstring(block[157:257])
        uid = _number(block[108:116], "uid", offset)
        gid = _number(block[116:124], "gid", offset)
        mtime_ns = _number(block[136:148], "mtime", offset) * 1_000_000_000
        xattrs: list[tuple[str, bytes]] = []
        for key, value in pax.items():
            if key == "path":
                name = value
            elif key == "linkpath":
                linkname = value
            elif key in ("size", "uid", "gid"):
                try:
                    number = int(value)
                except ValueError:
                    raise _corrupt(offset, f"invalid PAX {key} {value!r}") from None
                if number < 0:
                    raise _corrupt(offset, f"negative PAX {key}")
                size, uid, gid = ((number, uid, gid) if key == "size" else
                                  (size, number, gid) if key == "uid" else (size, uid, number))
            elif key == "mtime":
                mtime_ns = _pax_time_ns(_decode(value), offset)
            elif key.startswith("SCHILY.xattr."):
                xattrs.append((key[len("SCHILY.xattr."):], value))
            elif key.startswith("GNU.sparse."):
                raise _corrupt(offset, f"sparse file {_decode(name)!r} is not supported")
        if typeflag == b"\x00" and name.endswith(b"/"):
            typeflag = b"5"
        elif typeflag in _REGULAR:
            typeflag = b"0"
        elif typeflag not in _HEADER_ONLY:
            kind = "sparse file" if typeflag == b"S" else f"entry type {typeflag!r}"
            raise _corrupt(offset, f"{kind} ({_decode(name)!r}) is not supported")
        if size < 0:
            raise _corrupt(offset, "negative size")
        if b"\x00" in name or b"\x00" in linkname or any("\x00" in k for k, _ in xattrs):
            raise _corrupt(offset, f"NUL byte in the name, link or xattr of {_decode(name)!r}")
        return TarEntry(
            name=_decode(name), typeflag=typeflag,
            mode=_number(block[100:108], "mode", offset) & 0o7777, uid=uid, gid=gid, size=size,
            mtime_ns=mtime_ns, linkname=_decode(linkname),
            devmajor=_number(block[329:337], "devmajor", offset),
            devminor=_number(block[337:345], "devminor", offset),
            xattrs=tuple(sorted(xattrs)), offset=offset,
        )

    def finish(self) -> Digest:
        """Read the rest of the stream (after the end-of-archive marker) and return the
        digest of everything read."""
        self._skip_body()
        while self._fill():
            pass
        return Digest(self._algorithm, self._hasher.hexdigest())


class Applier:
    """Extracts tar entries below ``root``; see the module docstring.

    With ``overlay=False`` whiteouts delete, and an opaque marker empties its directory of
    everything this layer did not write itself. With ``overlay=True`` ``root`` is an
    overlayfs upper directory: whiteouts become 0/0 character devices and opaque markers the
    ``trusted.overlay.opaque=y`` xattr.

    With ``whiteouts=False`` the tar is a plain archive (ADD of a local archive), not a
    layer: ``.wh.`` names are ordinary files, an entry naming the root itself is passed
    over (the root keeps its own owner, mode and times) and missing parent directories are
    owned by 0:0. ``owner``, when given, is the ``(uid, gid)`` of every entry instead of the
    archive's.
    """

    def __init__(self, root: str, *, overlay: bool = False, whiteouts: bool = True,
                 owner: tuple[int, int] | None = None) -> None:
        """Prepare to extract below the existing directory ``root``."""
        self.paths = RootResolver(root)
        self.overlay = overlay
        self.whiteouts = whiteouts
        self.owner = owner
        self.written: set[str] = set()
        self._dir_times: list[tuple[str, int]] = []

    def apply(self, reader: TarReader) -> None:
        """Apply every entry of ``reader``, then set directory mtimes."""
        for entry in reader:
            try:
                self._apply(entry, reader)
            except LayerstoreError:
                raise
            except OSError as exc:
                raise InvalidArgument(
                    f"layer entry {quote_name(entry.name)}: {exc.strerror or exc} "
                    f"({errno.errorcode.get(exc.errno or 0, exc.errno)})"
                ) from exc
            except (ValueError, OverflowError) as exc:
                raise InvalidArgument(f"layer entry {quote_name(entry.name)}: {exc}") from exc
        dirs = dict(self._dir_times)
        for path in self.paths.still_real_dirs(list(dirs)):
            mtime = dirs[path]
            try:
                os.utime(path, ns=(mtime, mtime), follow_symlinks=False)
            except (OSError, OverflowError) as exc:
                raise InvalidArgument(f"layer directory {quote_name(path)}: cannot set mtime "
                                      f"{mtime} ns: {exc}") from exc

    def _apply(self, entry: TarEntry, reader: TarReader) -> None:
        parts = clean_entry_name(entry.name)
        if not self.whiteouts:
            if parts:
                self._entry(parts, entry, reader)
            return
        if any(p.startswith(wh.WHITEOUT_META_PREFIX) for p in parts[:-1]):
            return
        if not parts:
            if entry.typeflag != b"5":
                raise UnsafeLayer(f"layer entry {quote_name(entry.name)}: names the root but "
                                  "is not a directory")
            self._metadata(self.paths.root, entry)
            self._dir_times.append((self.paths.root, entry.mtime_ns))
            return
        base = parts[-1]
        if base.startswith(wh.WHITEOUT_PREFIX):
            self._whiteout(parts, entry)
            return
        self._entry(parts, entry, reader)

    def _entry(self, parts: tuple[str, ...], entry: TarEntry, reader: TarReader) -> None:
        """Write one entry that is not a whiteout at ``parts``."""
        base = parts[-1]
        self.paths.created.clear()
        resolved = self.paths.resolve_dir(parts[:-1], entry.name, create=True)
        assert resolved is not None
        if not self.whiteouts:
            for created in self.paths.created:
                os.lchown(created, 0, 0)
        self.written.update(self.paths.created)
        parent = self.paths.abspath(resolved)
        path = f"{parent}/{base}"
        try:
            st: os.stat_result | None = os.lstat(path)
        except FileNotFoundError:
            st = None
        is_dir = entry.typeflag == b"5"
        replace = st is not None and not (is_dir and stat.S_ISDIR(st.st_mode))
        if replace and wh.remove_path(path, st):
            self.paths.invalidate()
        kind = entry.typeflag
        if kind == b"0":
            self._regular(path, entry, reader)
        elif is_dir:
            if st is None or not stat.S_ISDIR(st.st_mode):
                os.mkdir(path, 0o700)
            self.paths.remember(parts, (*resolved, base))
            self._metadata(path, entry)
            self._dir_times.append((path, entry.mtime_ns))
        elif kind == b"1":
            self._hardlink(path, entry)
        else:
            if kind == b"2":
                os.symlink(entry.linkname, path)
            elif kind == b"6":
                os.mkfifo(path, 0o600)
            else:
                fmt = stat.S_IFCHR if kind == b"3" else stat.S_IFBLK
                try:
                    os.mknod(path, fmt | 0o600, os.makedev(entry.devmajor, entry.devminor))
                except PermissionError:
                    if not in_user_namespace():
                        raise
                    return  # no device nodes in a user namespace: skipped, as rootless peers do
            self._metadata(path, entry, symlink=kind == b"2")
            os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)
        self.written.add(path)

    def _regular(self, path: str, entry: TarEntry, reader: TarReader) -> None:
        fd = os.open(path, _WRITE_FLAGS, 0o600)
        try:
            def write(view: memoryview) -> None:
                while view:
                    view = view[os.write(fd, view):]

            reader.copy_body(write, f"data of {quote_name(entry.name)}")
            os.fchown(fd, *self._owner(entry))
            os.fchmod(fd, entry.mode)
            self._xattrs(fd, entry)
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
        finally:
            os.close(fd)

    def _hardlink(self, path: str, entry: TarEntry) -> None:
        target = clean_entry_name(entry.linkname, link_of=entry.name)
        if not target:
            raise UnsafeLayer(f"layer entry {quote_name(entry.name)}: hardlink to the root "
                              "or to nothing")
        parent = self.paths.directory(target[:-1], entry.name, create=False)
        source = f"{parent}/{target[-1]}"
        try:
            st = None if parent is None else os.lstat(source)
        except FileNotFoundError:
            st = None
        if st is None:
            raise InvalidArgument(f"layer entry {quote_name(entry.name)}: hardlink target "
                                  f"{quote_name(entry.linkname)} does not exist")
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeLayer(f"layer entry {quote_name(entry.name)}: hardlink to directory "
                              f"{quote_name(entry.linkname)}")
        os.link(source, path, follow_symlinks=False)

    def _owner(self, entry: TarEntry) -> tuple[int, int]:
        return self.owner if self.owner is not None else (entry.uid, entry.gid)

    def _metadata(self, path: str, entry: TarEntry, *, symlink: bool = False) -> None:
        os.chown(path, *self._owner(entry), follow_symlinks=False)
        if not symlink:
            os.chmod(path, entry.mode)
        self._xattrs(path, entry)

    @staticmethod
    def _xattrs(target: str | int, entry: TarEntry) -> None:
        for key, value in entry.xattrs:
            if wh.is_overlay_xattr(key):
                continue
            try:
                if isinstance(target, int):
                    os.setxattr(target, key, value)
                else:
                    os.setxattr(target, key, value, follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in _IGNORED_XATTR_ERRNOS:
                    raise

    def _whiteout(self, parts: tuple[str, ...], entry: TarEntry) -> None:
        base = parts[-1]
        if base == wh.OPAQUE_MARKER:
            directory = self.paths.directory(parts[:-1], entry.name, create=self.overlay)
            if directory is None:
                return
            if self.overlay:
                wh.set_overlay_opaque(directory)
            elif wh.clear_opaque_dir(directory, self.written):
                self.paths.invalidate()
            return
        if base.startswith(wh.WHITEOUT_META_PREFIX):
            return
        name = wh.deleted_name(base, entry.name)
        directory = self.paths.directory(parts[:-1], entry.name, create=self.overlay)
        if directory is None:
            return
        path = f"{directory}/{name}"
        if wh.remove_path(path):
            self.paths.invalidate()
        if self.overlay:
            wh.make_overlay_whiteout(path)
            self.written.add(path)
