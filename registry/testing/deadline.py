"""A per-test time limit for tests that wait on servers: past it, the case fails with a
``TimeoutError`` instead of hanging the session (SIGALRM, so only on the main thread)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def time_limit(seconds: int, what: str = "test") -> Iterator[None]:
    """Raise ``TimeoutError`` in the main thread when the block runs over ``seconds``;
    off the main thread the block runs unbounded (signals reach only the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"{what} ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
