"""Whiteout conventions: OCI layer tars versus overlayfs upper directories.

In a layer tar a deleted ``name`` is an empty file ``.wh.<name>`` in the same directory and
an opaque directory (one hiding everything below it in lower layers) holds ``.wh..wh..opq``.
On overlayfs a deletion is a character device 0/0 and an opaque directory carries the
``trusted.overlay.opaque=y`` xattr, or ``user.overlay.opaque=y`` inside a user namespace
(overlays mounted there with ``userxattr``, see :mod:`layerstore.userns`).
"""

from __future__ import annotations

import os
import stat

from layerstore.archive.safepath import quote_name
from layerstore.errors import UnsafeLayer
from layerstore.userns import in_user_namespace

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
OPAQUE_MARKER = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
OVERLAY_USER_OPAQUE_XATTR = "user.overlay.opaque"
OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
_OVERLAY_XATTR_PREFIXES_B = tuple(p.encode() for p in OVERLAY_XATTR_PREFIXES)


def is_overlay_whiteout(st: os.stat_result) -> bool:
    """Whether ``st`` (an lstat result) is an overlayfs whiteout: a 0/0 character device."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def opaque_xattr() -> str:
    """The xattr overlayfs marks an opaque directory with in this process's user namespace:
    ``trusted.overlay.opaque``, or ``user.overlay.opaque`` inside a user namespace."""
    return OVERLAY_USER_OPAQUE_XATTR if in_user_namespace() else OVERLAY_OPAQUE_XATTR


def is_overlay_opaque(path: str | bytes) -> bool:
    """Whether the directory at ``path`` is marked opaque (:func:`opaque_xattr` is ``y``)."""
    try:
        return os.getxattr(path, opaque_xattr(), follow_symlinks=False) == b"y"
    except OSError:
        return False


def is_overlay_xattr(name: str | bytes) -> bool:
    """Whether an xattr is overlayfs bookkeeping, never carried in a layer tar."""
    if isinstance(name, bytes):
        return name.startswith(_OVERLAY_XATTR_PREFIXES_B)
    return name.startswith(OVERLAY_XATTR_PREFIXES)


def whiteout_name(name: bytes) -> bytes:
    """The tar basename that deletes ``name``."""
    return WHITEOUT_PREFIX.encode() + name


def deleted_name(base: str, entry: str) -> str:
    """The name a ``.wh.<name>`` basename deletes; hostile names raise :class:`UnsafeLayer`."""
    name = base[len(WHITEOUT_PREFIX) :]
    if name in ("", ".", "..") or "/" in name or "\x00" in name:
        raise UnsafeLayer(f"layer entry {quote_name(entry)}: invalid whiteout for name {name!r}")
    return name


def make_overlay_whiteout(path: str) -> None:
    """Create an overlayfs whiteout (character device 0/0, mode 0) at ``path``."""
    os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))


def set_overlay_opaque(path: str) -> None:
    """Mark the directory ``path`` opaque for overlayfs."""
    os.setxattr(path, opaque_xattr(), b"y", follow_symlinks=False)


def remove_path(path: str, st: os.stat_result | None = None) -> bool:
    """Remove whatever is at ``path`` without following symlinks.

    Returns whether a directory or a symlink was removed (so resolutions through it are
    stale). A missing path is not an error.
    """
    if st is None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
    if stat.S_ISDIR(st.st_mode):
        _rmtree(path)
        return True
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return stat.S_ISLNK(st.st_mode)


def clear_opaque_dir(directory: str, keep: set[str]) -> bool:
    """Remove everything below ``directory`` whose path is not in ``keep``.

    ``keep`` holds the absolute paths the layer being applied wrote itself; a kept
    directory is descended into, so lower-layer entries below it go too. Returns whether
    anything was removed. Symlinks are never followed.
    """
    removed = False
    stack = [directory]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.path in keep:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                continue
            remove_path(entry.path)
            removed = True
    return removed


def _rmtree(path: str) -> None:
    """Remove a directory tree without following symlinks and without recursion (layers
    may nest deeper than Python's recursion limit)."""
    stack = [(path, False)]
    while stack:
        current, emptied = stack.pop()
        if emptied:
            os.rmdir(current)
            continue
        stack.append((current, True))
        with os.scandir(current) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, False))
                else:
                    os.unlink(entry.path)
