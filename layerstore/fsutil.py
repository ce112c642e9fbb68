"""Small filesystem durability helpers shared by the stores."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from pathlib import Path

#: Bytes a writer lets pile up before it asks the kernel to start writing them out.
WRITEBACK_STEP = 8 << 20
_SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range``, loaded on first use (ctypes costs a command's start-up)."""
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing ``length`` bytes of ``fd`` from ``offset`` to disk
    without waiting (Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``), so that the fsync
    that makes the file durable later has little left to do. It guarantees nothing by
    itself; a no-op where the call is missing or fails."""
    fn = _sync_file_range()
    if fn is not None:
        fn(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def fsync_dir(directory: Path) -> None:
    """Make the entries (renames, unlinks) of ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(target: Path, data: bytes, mode: int = 0o644, *, replace: bool = True) -> bool:
    """Write ``data`` to ``target`` so that readers see the old or the new file, whole, and the
    new one survives a crash once this returns. The file gets permission bits ``mode``.

    With ``replace=False`` an existing ``target`` is kept (racing writers: the first to land
    wins); the return value says whether this call's data landed.
    """
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.rename(tmp, target)
            landed = True
        else:
            try:
                os.link(tmp, target)
                landed = True
            except FileExistsError:
                landed = False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(target.parent)
    return landed
