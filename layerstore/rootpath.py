"""Resolving paths inside a root directory the way a process chrooted into it would.

This is the one path-safe resolver of the project: layer extraction
(:class:`~layerstore.archive.safepath.RootResolver`), ADD of local archives, COPY
destinations, ``--from`` sources, RUN mount targets and ``/etc/passwd`` lookups all go
through :func:`walk`.

Every component is resolved below the root: ``..`` never climbs above it and symlinks,
absolute or relative, are followed *inside* it (an absolute target starts again at the
root), so no result ever names anything outside the root. More than :data:`MAX_SYMLINKS`
symlinks in one resolution is a :class:`SymlinkLoop` (an ``OSError`` with ``ELOOP``).
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

__all__ = ["MAX_SYMLINKS", "Missing", "SymlinkLoop", "clean", "relative_to_root", "resolve",
           "split", "walk"]

#: Symlinks one resolution may follow (the kernel's own limit, ``MAXSYMLINKS``).
MAX_SYMLINKS = 40


class SymlinkLoop(OSError):
    """A resolution followed more than :data:`MAX_SYMLINKS` symlinks."""

    def __init__(self, path: str) -> None:
        """``path`` is the root-relative path at which the limit was reached."""
        super().__init__(errno.ELOOP, "too many levels of symbolic links (symlink loop)", path)


class Missing(enum.Enum):
    """What :func:`walk` does with a component that does not exist."""

    APPEND = "append"
    """Append it and the rest of the path lexically (where a new file would go)."""
    CREATE = "create"
    """Create it as a directory (mode 0755) and go on."""
    STOP = "stop"
    """Stop: :func:`walk` returns None."""


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


def _join(root: str, parts: Sequence[str]) -> str:
    return root + "/" + "/".join(parts) if parts else root


def walk(
    root: str,
    path: Sequence[str],
    *,
    start: Sequence[str] = (),
    follow_last: bool = True,
    missing: Missing = Missing.APPEND,
    directories: bool = False,
    created: list[str] | None = None,
) -> tuple[str, ...] | None:
    """Resolve the components ``path`` below the components ``start`` (already resolved,
    real directories) inside ``root``; return the resolved components relative to ``root``.

    With ``follow_last=False`` a symlink in the last component is not followed. ``missing``
    says what happens at a component that does not exist (paths of directories made by
    :attr:`Missing.CREATE` are appended to ``created``). With ``directories`` every
    component must resolve to a directory (else ``NotADirectoryError``); without, a component
    that exists but is not a directory is kept as is, and using the result fails with
    ``ENOTDIR``.
    """
    resolved = list(start)
    pending = list(reversed(path))
    links = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = _join(root, [*resolved, part])
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            if missing is Missing.STOP:
                return None
            if missing is Missing.APPEND:
                for rest in [part, *reversed(pending)]:
                    if rest == "..":
                        if resolved:
                            resolved.pop()
                    elif rest not in ("", "."):
                        resolved.append(rest)
                break
            os.mkdir(candidate)
            os.chmod(candidate, 0o755)
            if created is not None:
                created.append(candidate)
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode) and (pending or follow_last):
            links += 1
            if links > MAX_SYMLINKS:
                raise SymlinkLoop("/" + "/".join([*resolved, part]))
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved.clear()
            pending.extend(reversed(target.split("/")))
            continue
        if directories and not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory",
                                     "/".join([*resolved, part]))
        resolved.append(part)
    return tuple(resolved)


def resolve(root: str | os.PathLike[str], path: str, *, follow: bool = True) -> Path:
    """The host path of ``path`` inside ``root``, following symlinks without leaving it.

    Components that do not exist are appended lexically, so the result names where a new
    file would be created. With ``follow=False`` a symlink in the last component is not
    followed (the result names the link itself). A symlink loop raises :class:`SymlinkLoop`.
    """
    base = os.fspath(root)
    parts = walk(base, split(path), follow_last=follow)
    assert parts is not None
    return Path(base, *parts)


def relative_to_root(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> str:
    """``path`` (a host path below ``root``) as the absolute path seen inside the root."""
    base = os.fspath(root).rstrip("/")
    text = os.fspath(path)
    if text == base:
        return "/"
    if text.startswith(base + "/"):
        return text[len(base):]
    return text
