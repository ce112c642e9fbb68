"""The lock that keeps garbage collection and pushes apart.

Writers that make content reachable (committing an upload, mounting a blob, putting a
manifest) hold the lock *shared* while they check and link; the garbage collector's sweep
holds it *exclusive*, so a blob is never deleted between "it exists" and "it is linked".
The lock is an ``flock`` on ``<root>/gc.lock``, so it works across the server's worker
processes and a ``registry gc`` run from the command line.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path


def _lock_file(root: Path) -> int:
    root.mkdir(parents=True, exist_ok=True)
    return os.open(root / "gc.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


@contextmanager
def _flocked(root: Path, operation: int) -> Iterator[None]:
    fd = _lock_file(root)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)


def push_guard(root: Path) -> AbstractContextManager[None]:
    """Hold the GC lock shared (many pushes at once; waits while a sweep runs)."""
    return _flocked(root, fcntl.LOCK_SH)


def sweep_lock(root: Path) -> AbstractContextManager[None]:
    """Hold the GC lock exclusive (waits for pushes in their critical section)."""
    return _flocked(root, fcntl.LOCK_EX)
