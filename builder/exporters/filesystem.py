"""The final filesystem of a build as a directory (``type=local``) or a tar (``type=tar``).

Both read a read-only view of the committed snapshot. The tar holds the root as ``./`` and
every entry below it as ``./<path>``, in sorted order, written by the layer store's
reproducible :class:`~layerstore.archive.writer.TarWriter` (numeric owners, xattrs,
hardlinks as links, whole-second mtimes, padded to tar's 10240-byte records).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from builder.errors import BuildError
from builder.store import BuildStore, view_of
from layerstore import treecopy
from layerstore.archive.writer import RECORD_SIZE, TarWriter, walk

__all__ = ["export_local", "export_tar", "write_tree_tar"]


def export_local(store: BuildStore, chain: str | None, dest: Path) -> None:
    """Copy the filesystem of committed snapshot ``chain`` into the directory ``dest``."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
        with view_of(store, chain) as root:
            treecopy.copy_tree(root, dest, contents=True)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise BuildError(f"cannot write the filesystem to {dest}: "
                         f"{exc.strerror or exc}{where}") from None


def write_tree_tar(root: Path, out: BinaryIO) -> None:
    """Write the tree at ``root`` to ``out`` as a tar of ``./`` and ``./<path>`` entries."""
    base = os.fsencode(root)
    tar = TarWriter(out.write)
    tar.add(b".", base, os.lstat(base))
    for name, path, st in walk(base):
        tar.add(b"./" + name, path, st)
    tar.close(record_size=RECORD_SIZE)


def export_tar(store: BuildStore, chain: str | None, out: BinaryIO) -> None:
    """Write the filesystem of committed snapshot ``chain`` to ``out`` as a tar."""
    try:
        with view_of(store, chain) as root:
            write_tree_tar(root, out)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise BuildError(f"cannot write the filesystem as a tar: "
                         f"{exc.strerror or exc}{where}") from None
