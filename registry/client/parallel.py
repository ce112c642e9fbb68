"""Running blob transfers side by side, stopping the others when one fails."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

_T = TypeVar("_T")
Job = Callable[[threading.Event], _T]


def run_all(jobs: Sequence[Job[_T]], workers: int) -> list[_T]:
    """Run every job on at most ``workers`` threads; their results in order. Each job gets
    an event that is set once another job failed (it should stop soon); the first failure
    is raised after every started job has returned."""
    if not jobs:
        return []
    cancel = threading.Event()
    if workers <= 1 or len(jobs) == 1:
        return [job(cancel) for job in jobs]
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs)),
                            thread_name_prefix="registry-client") as pool:
        futures = [pool.submit(job, cancel) for job in jobs]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            errors = [e for f in futures if f in done and (e := f.exception()) is not None]
            if errors:
                raise errors[0]
        except BaseException:
            cancel.set()
            for future in futures:
                future.cancel()
            raise
        return [f.result() for f in futures]


__all__ = ["Job", "run_all"]
