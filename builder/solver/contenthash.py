"""Content hashes of build-context files, for cache keys.

A hash covers each selected file's path, type, mode, owner, size, link target and bytes,
never its timestamps: a file edited in place keeps its size and mtime yet changes the hash.
File contents are hashed once per (device, inode, size, mtime, ctime) within a process; the
ctime changes on every write, and user space cannot set it back.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

from builder.errors import DockerfileError
from builder.fileops import select_sources
from builder.frontend.dockerignore import DockerIgnore

_CHUNK = 1 << 20
_memo: dict[tuple[int, int, int, int, int], str] = {}
_memo_lock = threading.Lock()


def file_digest(path: str, st: os.stat_result) -> str:
    """sha256 of a regular file's bytes (memoised by inode, size, mtime and ctime)."""
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    with _memo_lock:
        known = _memo.get(key)
    if known is not None:
        return known
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    with _memo_lock:
        _memo[key] = digest
    return digest


def _entry(relpath: str, path: str, st: os.stat_result) -> str:
    mode = stat.S_IMODE(st.st_mode)
    kind = stat.S_IFMT(st.st_mode)
    extra = ""
    if stat.S_ISREG(st.st_mode):
        extra = f"{st.st_size}:{file_digest(path, st)}"
    elif stat.S_ISLNK(st.st_mode):
        extra = os.readlink(path)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        extra = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return f"{relpath}\0{kind:o}\0{mode:o}\0{st.st_uid}:{st.st_gid}\0{extra}\n"


def _walk(h: hashlib._Hash, relpath: str, path: str, ignore: DockerIgnore | None,
          context: bool) -> None:
    """Hash ``path`` and everything below it in path order (a stack, not recursion: a
    context may be deeper than Python's recursion limit)."""
    stack = [(relpath, path)]
    while stack:
        rel, current = stack.pop()
        st = os.lstat(current)
        h.update(_entry(rel, current, st).encode("utf-8", "surrogateescape"))
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


def sources_digest(root: Path, patterns: Iterable[str], *, ignore: DockerIgnore | None,
                   context: bool, line: int | None, file: str,
                   instruction: str = "COPY") -> str:
    """One hash of everything ``patterns`` select below ``root`` (``.dockerignore`` applied
    to context sources), as the COPY would see it."""
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
