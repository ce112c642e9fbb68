"""One run of a rule at a time, and the record of a run in progress.

:func:`take_rule` leases a rule to the calling process (the store's ``claim``); a run
whose process died leaves its run ``running`` and its lease held: it is taken over at once
when the dead process was on this host (its pid is gone), else once its heartbeat is
:data:`LEASE_SECONDS` old, and recorded as ``interrupted``. :class:`RunRecorder` keeps a
running run's counts, heartbeat and lease up to date every :data:`HEARTBEAT_SECONDS` (from
a thread, so that a long blob transfer does not let the lease run out), then records how it
ended.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import replace

from registry.replication.copier import Tally
from registry.replication.model import INTERRUPTED, RUNNING, Rule, RuleBusy, Run
from registry.replication.store import ReplicationStore

__all__ = ["HEARTBEAT_SECONDS", "LEASE_SECONDS", "RunRecorder", "runner_id", "take_rule"]

LEASE_SECONDS = 30.0
HEARTBEAT_SECONDS = 2.0


def runner_id() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _gone(run: Run) -> bool:
    """Whether the process that ran ``run`` is known to be gone (it ran on this host and its
    pid is free)."""
    host, _, pid = run.runner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def take_rule(store: ReplicationStore, rule: Rule, now: float) -> int:
    """Lease ``rule`` to this process; the id of the interrupted run taken over (0 if
    none). RuleBusy when a live process is running it."""
    previous = store.runs(rule.name, 1)
    last = previous[0] if previous else None
    if last is not None and last.state == RUNNING and (
            _gone(last) or last.heartbeat + LEASE_SECONDS < now):
        store.release(rule.name)
        store.update_run(replace(last, state=INTERRUPTED, finished_at=last.heartbeat,
                                 error=last.error or "the replicating process stopped "
                                 "before it finished"))
        if store.claim(rule.name, now, LEASE_SECONDS):
            return last.id
    elif store.claim(rule.name, now, LEASE_SECONDS):
        return 0
    since = f" (run {last.id}, by {last.runner})" if last is not None else ""
    raise RuleBusy(f"NAME {rule.name!r}: the rule is being run by another process{since}; "
                   "try again when it has finished")


class RunRecorder:
    """Records the run ``run`` while it works (module docstring): use it as a context
    manager around the work, then call :meth:`finish`. ``tally`` is what the copy counts
    in."""

    def __init__(self, store: ReplicationStore, run: Run) -> None:
        self.store = store
        self.run = run
        self.tally = Tally(changed=self._changed)
        self._lock = threading.Lock()
        self._saved = 0.0
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True,
                                      name="replication-heartbeat")

    def __enter__(self) -> RunRecorder:
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._beat.join(HEARTBEAT_SECONDS * 2)

    def _snapshot(self, state: str = RUNNING, error: str = "") -> Run:
        at = time.time()
        t = self.tally
        self.run = replace(self.run, manifests=t.manifests, blobs=t.blobs, skipped=t.skipped,
                           mounted=t.mounted, bytes=t.bytes, deleted=t.deleted,
                           heartbeat=at, state=state, error=error,
                           finished_at=at if state != RUNNING else 0.0)
        return self.run

    def _changed(self) -> None:
        with self._lock:
            now = time.time()
            if now - self._saved < HEARTBEAT_SECONDS:
                return
            self._saved = now
            self.store.update_run(self._snapshot())
            self.store.renew(self.run.rule, now + LEASE_SECONDS)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self._changed()
            except Exception:
                continue

    def finish(self, state: str, error: str) -> Run:
        """Record the end of the run: ``state`` (succeeded, failed) and ``error``."""
        with self._lock:
            self.store.update_run(self._snapshot(state, error))
        return self.run
