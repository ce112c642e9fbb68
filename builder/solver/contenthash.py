"""Content hashes of build-context files, for cache keys.

A hash covers each selected file's path, type, mode, owner, size, link target and bytes,
never its timestamps: a file edited in place keeps its size and mtime yet changes the hash.
File contents are hashed once per (device, inode, size, mtime, ctime) within a process; the
ctime changes on every write, and user space cannot set it back.

:class:`StatCache` keeps those file hashes between builds (one small file per context
directory). An entry is reused only while the file's inode, size, mtime and ctime (in
nanoseconds) are all unchanged, and an entry is only kept for a file whose mtime and ctime
were already :data:`RACY_NS` old when it was hashed: a file written again within the same
timestamp tick as the hashing could otherwise keep all four values (git's racy-clean rule).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from layerstore.digest import Digest

if TYPE_CHECKING:
    from builder.frontend.dockerignore import DockerIgnore

_memo: dict[tuple[int, int, int, int, int], str] = {}
_memo_lock = threading.Lock()

RACY_NS = 2_000_000_000
"""How old a file's mtime and ctime must be at hashing time for its hash to be kept."""
_FORMAT = 1


def _memo_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_digest(path: str, st: os.stat_result) -> str:
    """sha256 of a regular file's bytes (memoised by inode, size, mtime and ctime)."""
    key = _memo_key(st)
    with _memo_lock:
        known = _memo.get(key)
    if known is not None:
        return known
    with open(path, "rb") as f:
        digest = Digest.from_stream(f).hex
    with _memo_lock:
        _memo[key] = digest
    return digest


class StatCache:
    """File hashes of one context directory kept between builds in the file ``path``.

    :meth:`digest` answers from the kept entry when the file's inode, size, mtime and ctime
    all match it, and hashes the file otherwise; :meth:`save` writes the entries back
    (atomically; a damaged or missing file only means hashing again).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.started_ns = time.time_ns()
        self._old: dict[str, list[int | str]] = {}
        self._new: dict[str, list[int | str]] = {}
        if path is not None:
            try:
                doc = json.loads(path.read_bytes())
                if doc.get("format") == _FORMAT and isinstance(doc.get("files"), dict):
                    self._old = doc["files"]
            except (OSError, ValueError, AttributeError):
                pass

    def digest(self, relpath: str, path: str, st: os.stat_result) -> str:
        """sha256 of the regular file ``path`` (``relpath`` in the context)."""
        stamp: list[int | str] = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        old = self._old.get(relpath)
        if old is not None and old[:4] == stamp and isinstance(old[4], str):
            digest = old[4]
            with _memo_lock:
                _memo.setdefault(_memo_key(st), digest)
        else:
            digest = file_digest(path, st)
        if max(st.st_mtime_ns, st.st_ctime_ns) < self.started_ns - RACY_NS:
            self._new[relpath] = [*stamp, digest]
        return digest

    def save(self) -> None:
        """Write the entries of files seen since this cache was opened (when they differ)."""
        if self.path is None or self._new == self._old:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"format": _FORMAT, "files": self._new},
                                      separators=(",", ":")))
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


def _entry(relpath: str, path: str, st: os.stat_result,
           digest: Callable[[str, str, os.stat_result], str] | None = None) -> str:
    mode = stat.S_IMODE(st.st_mode)
    kind = stat.S_IFMT(st.st_mode)
    extra = ""
    if stat.S_ISREG(st.st_mode):
        hexdigest = digest(relpath, path, st) if digest else file_digest(path, st)
        extra = f"{st.st_size}:{hexdigest}"
    elif stat.S_ISLNK(st.st_mode):
        extra = os.readlink(path)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        extra = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return f"{relpath}\0{kind:o}\0{mode:o}\0{st.st_uid}:{st.st_gid}\0{extra}\n"


def _walk(h: hashlib._Hash, relpath: str, path: str, ignore: DockerIgnore | None,
          context: bool,
          digest: Callable[[str, str, os.stat_result], str] | None = None) -> None:
    """Hash ``path`` and everything below it in path order (a stack, not recursion: a
    context may be deeper than Python's recursion limit)."""
    stack = [(relpath, path)]
    while stack:
        rel, current = stack.pop()
        st = os.lstat(current)
        h.update(_entry(rel, current, st, digest).encode("utf-8", "surrogateescape"))
        if not stat.S_ISDIR(st.st_mode):
            continue
        children = []
        for name in sorted(os.listdir(current)):
            child_rel = f"{rel}/{name}" if rel not in ("", ".") else name
            child = os.path.join(current, name)
            hidden = context and ignore is not None and ignore.excluded(child_rel)
            if hidden and not (os.path.isdir(child) and not os.path.islink(child)
                               and ignore is not None and ignore.must_descend(child_rel)):
                continue
            children.append((child_rel, child))
        stack.extend(reversed(children))


def tree_digest(root: Path, ignore: DockerIgnore | None, cache: StatCache) -> str:
    """One hash of the whole context below ``root`` (``.dockerignore`` applied), file
    contents through ``cache``; raises OSError when something cannot be read."""
    h = hashlib.sha256()
    _walk(h, ".", str(root), ignore, True, cache.digest)
    return h.hexdigest()


def sources_digest(root: Path, patterns: Iterable[str], *, ignore: DockerIgnore | None,
                   context: bool, line: int | None, file: str,
                   instruction: str = "COPY") -> str:
    """One hash of everything ``patterns`` select below ``root`` (``.dockerignore`` applied
    to context sources), as the COPY would see it."""
    from builder.errors import DockerfileError
    from builder.fileops import select_sources

    h = hashlib.sha256()
    for pattern in patterns:
        h.update(f"pattern\0{pattern}\n".encode())
        try:
            selected = select_sources(root, pattern, ignore=ignore, context=context)
        except DockerfileError as exc:
            raise DockerfileError(f"{instruction} failed: {exc.message}",
                                  line if exc.line is None else exc.line, file) from None
        for source in selected:
            _walk(h, source.relpath, str(source.path), ignore, context)
    return h.hexdigest()
