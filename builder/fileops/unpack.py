"""Local tar archives of ADD: detection and safe extraction into a directory.

A file is an archive when, after transparent decompression (gzip, bzip2, xz, zstd or none,
detected from magic bytes), its first 512 bytes are a valid tar header; the file name
does not matter. Extraction follows BuildKit: the destination directory is the root of the
extraction (``..`` stops there, absolute and relative symlinks are resolved inside it), an
existing entry that is not a directory merging with a directory is replaced, missing parent
directories are made with mode 0755 and owner 0:0, entries keep the owner, mode and mtime of
the archive unless ``--chown`` gives an owner. ``.wh.`` names have no special meaning here.
Extraction is the layer store's :class:`~layerstore.archive.reader.Applier` without
whiteout conversion.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from builder.errors import DockerfileError
from layerstore.archive.reader import Applier, TarReader, is_tar_header
from layerstore.compression import decompress_reader
from layerstore.errors import LayerstoreError

__all__ = ["is_archive", "unpack"]

BLOCK = 512


@contextlib.contextmanager
def _decompressed(path: Path) -> Iterator[BinaryIO]:
    with open(path, "rb") as raw:
        yield decompress_reader(raw)


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
    return is_tar_header(head)


def unpack(archive: Path, dest: Path, *, owner: tuple[int, int] | None = None,
           display_name: str | None = None) -> None:
    """Extract ``archive`` (see :func:`is_archive`) into the existing directory ``dest``.

    With ``owner`` every entry gets that ``(uid, gid)`` instead of the archive's. Damaged
    archives and entries that try to leave ``dest`` raise :class:`DockerfileError`.
    """
    name = display_name or archive.name
    try:
        with _decompressed(archive) as stream:
            Applier(os.fspath(dest), whiteouts=False, owner=owner).apply(TarReader(stream))
    except LayerstoreError as exc:
        raise DockerfileError(f"archive {name}: {exc}") from None
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise DockerfileError(f"archive {name}: {exc.strerror or exc}{where}") from None
