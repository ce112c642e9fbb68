"""The lock that keeps garbage collection and pushes apart.

Writers that make content reachable (committing an upload, mounting a blob, putting a
manifest) hold the lock *shared* while they check and link; the garbage collector's sweep
holds it *exclusive*, so a blob is never deleted between "it exists" and "it is linked".
The lock is an ``flock`` on ``<root>/gc.lock``, so it works across the server's worker
processes and a ``registry gc`` run from the command line. Replicas on several hosts that
share one metadata database also take that database's lock of the same shape
(:func:`use_cluster_lock`, a PostgreSQL advisory lock), after the local one.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Protocol


class ClusterLock(Protocol):
    """The GC lock of a database that several hosts share."""

    def shared(self) -> AbstractContextManager[None]:
        """Hold it shared."""
        ...

    def exclusive(self) -> AbstractContextManager[None]:
        """Hold it exclusive."""
        ...


_cluster: ClusterLock | None = None


def use_cluster_lock(lock: ClusterLock | None) -> None:
    """Make :func:`push_guard` and :func:`sweep_lock` of this process also take ``lock``
    (``None``: only the local one)."""
    global _cluster
    _cluster = lock


def _lock_file(root: Path) -> int:
    root.mkdir(parents=True, exist_ok=True)
    return os.open(root / "gc.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


@contextmanager
def _flocked(root: Path, operation: int) -> Iterator[None]:
    fd = _lock_file(root)
    try:
        fcntl.flock(fd, operation)
        with ExitStack() as stack:
            cluster = _cluster
            if cluster is not None:
                stack.enter_context(cluster.shared() if operation == fcntl.LOCK_SH
                                    else cluster.exclusive())
            yield
    finally:
        os.close(fd)


def push_guard(root: Path) -> AbstractContextManager[None]:
    """Hold the GC lock shared (many pushes at once; waits while a sweep runs)."""
    return _flocked(root, fcntl.LOCK_SH)


def sweep_lock(root: Path) -> AbstractContextManager[None]:
    """Hold the GC lock exclusive (waits for pushes in their critical section)."""
    return _flocked(root, fcntl.LOCK_EX)
