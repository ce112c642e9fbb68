"""Resolving paths inside a root filesystem the way a process chrooted into it would.

Every component is resolved below the root: ``..`` never climbs above it and symlinks,
absolute or relative, are followed *inside* it (an absolute target starts again at the root).
Components that do not exist are appended lexically, so the result names where a new file
would be created. This is containerd's ``fs.RootPath`` behaviour, which BuildKit uses for the
destination of COPY/ADD and for reading ``/etc/passwd`` from an image.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["MAX_SYMLINKS", "clean", "relative_to_root", "resolve", "split"]

MAX_SYMLINKS = 255


def split(path: str) -> list[str]:
    """The components of ``path`` after lexical cleaning as if it were absolute.

    Empty and ``.`` components are dropped and ``..`` removes the previous component (at
    the root it is dropped), so ``split("/../a/./b/../c")`` is ``["a", "c"]``.
    """
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return parts


def clean(path: str) -> str:
    """``path`` cleaned lexically and made absolute: ``clean("a/../b/")`` is ``"/b"``."""
    return "/" + "/".join(split(path))


def resolve(root: str | os.PathLike[str], path: str, *, follow: bool = True) -> Path:
    """The host path of ``path`` inside ``root``, following symlinks without leaving it.

    With ``follow=False`` a symlink in the last component is not followed (the result names
    the link itself). A symlink loop raises ``OSError(ELOOP)``. A component that exists but
    is not a directory is kept as is; using the result then fails with ``ENOTDIR``.
    """
    base = os.fspath(root)
    resolved: list[str] = []
    pending = list(reversed(split(path)))
    links = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        if part in ("", "."):
            continue
        candidate = os.path.join(base, *resolved, part)
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            for rest in [part, *reversed(pending)]:
                if rest == "..":
                    if resolved:
                        resolved.pop()
                elif rest not in ("", "."):
                    resolved.append(rest)
            break
        if stat.S_ISLNK(st.st_mode) and (pending or follow):
            links += 1
            if links > MAX_SYMLINKS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links",
                              "/" + "/".join([*resolved, part]))
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved.clear()
            pending.extend(reversed(target.split("/")))
            continue
        resolved.append(part)
    return Path(base, *resolved)


def relative_to_root(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> str:
    """``path`` (a host path below ``root``) as the absolute path seen inside the root."""
    base = os.fspath(root).rstrip("/")
    text = os.fspath(path)
    if text == base:
        return "/"
    if text.startswith(base + "/"):
        return text[len(base):]
    return text
