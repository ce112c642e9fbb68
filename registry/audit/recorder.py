"""The audit writer of a server process: requests hand their events to
:meth:`AuditRecorder.add` (an append under a lock: nothing waits for the database), a thread
writes them in batches every :data:`FLUSH_SECONDS` (sooner when :data:`BATCH` are waiting)
and turns them into webhook deliveries.

The queue is bounded: when :data:`CAPACITY` events wait (the database is slow or down), the
request that adds one more writes the batch itself, so the queue never drops events; if that
fails too, the request is refused with ``Unavailable`` (the client is told to retry) rather
than done unrecorded.
:meth:`close` (a clean shutdown) writes what is left before it returns. A batch that cannot
be written is kept and retried on the next flush.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from layerstore.errors import Unavailable
from registry.audit.events import AuditEvent
from registry.audit.store import AuditStore
from registry.webhooks.service import WebhookService

__all__ = ["BATCH", "CAPACITY", "FLUSH_SECONDS", "AuditRecorder"]

FLUSH_SECONDS = 0.5
BATCH = 256
CAPACITY = 10_000
PRUNE_SECONDS = 3600.0
log = logging.getLogger("registry.audit")


class AuditRecorder:
    """Queues audit events and writes them off the request path (module docstring).
    ``webhooks`` turns each written batch into deliveries, then ``delivered`` is called
    (to wake the delivery worker); ``max_age`` (seconds, 0: forever) prunes old events.
    Each of ``observers`` is given every written batch (replication's on-push trigger)."""

    def __init__(self, store: AuditStore, webhooks: WebhookService | None = None, *,
                 delivered: Callable[[], None] | None = None, max_age: float = 0,
                 observers: Sequence[Callable[[Sequence[AuditEvent]], None]] = ()) -> None:
        self.store = store
        self.observers = tuple(observers)
        self.webhooks = webhooks
        self.delivered = delivered
        self.max_age = max_age
        self._queue: list[AuditEvent] = []
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._stop = False
        self._pruned_at = 0.0
        self._thread = threading.Thread(target=self._run, name="registry-audit", daemon=True)

    def start(self) -> AuditRecorder:
        """Start the writer thread."""
        self._thread.start()
        return self

    def add(self, event: AuditEvent) -> None:
        """Queue ``event``; writes the queue here if it is full."""
        with self._cond:
            self._queue.append(event)
            size = len(self._queue)
            if size >= BATCH:
                self._cond.notify()
        if size >= CAPACITY:
            try:
                self.flush()
            except Exception as exc:
                raise Unavailable(f"the audit log cannot be written ({size} events wait): "
                                  f"{exc}") from None

    def flush(self) -> None:
        """Write the queued events now (and queue their webhook deliveries)."""
        with self._write_lock:
            with self._cond:
                batch, self._queue = self._queue, []
            if not batch:
                return
            try:
                self.store.add(batch)
            except Exception:
                with self._cond:
                    self._queue[:0] = batch
                raise
            if self.webhooks is not None:
                try:
                    if self.webhooks.emit(batch) and self.delivered is not None:
                        self.delivered()
                except Unavailable as exc:
                    log.error("queueing webhook deliveries for %d events failed: %s",
                              len(batch), exc)
                except Exception:
                    log.exception("queueing webhook deliveries for %d events failed",
                                  len(batch))
            for observe in self.observers:
                try:
                    observe(batch)
                except Exception:
                    log.exception("an observer of %d audit events failed", len(batch))

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._stop and len(self._queue) < BATCH:
                    self._cond.wait(FLUSH_SECONDS)
                stopping = self._stop
            try:
                self.flush()
                self._prune()
            except Exception as exc:
                if isinstance(exc, Unavailable):
                    log.error("writing the audit log failed (%s); retrying", exc)
                else:
                    log.exception("writing the audit log failed; retrying")
                if not stopping:
                    time.sleep(FLUSH_SECONDS)
            if stopping:
                return

    def _prune(self) -> None:
        now = time.time()
        if self.max_age > 0 and now - self._pruned_at >= PRUNE_SECONDS:
            self._pruned_at = now
            gone = self.store.prune(now - self.max_age)
            if gone:
                log.info("audit log: %d events older than %d days removed", gone,
                         self.max_age // 86400)

    def close(self) -> None:
        """Stop the writer and write what is queued (one last attempt on failure, which is
        logged with the number of events it concerns)."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join()
        try:
            self.flush()
        except Unavailable as exc:
            log.error("audit log: %d events could not be written at shutdown: %s",
                      len(self._queue), exc)
        except Exception:
            log.exception("audit log: %d events could not be written at shutdown",
                          len(self._queue))
