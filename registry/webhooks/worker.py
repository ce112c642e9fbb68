"""The delivery worker of a server process: a thread that claims due deliveries
(:meth:`~registry.webhooks.store.WebhookStore.claim`), POSTs each to its webhook and records
the outcome. A 2xx answer delivers; anything else (another status, a refused connection, a
timeout) is retried after ``webhook_retry_seconds`` doubled at each attempt (at most an
hour), until ``webhook_max_attempts`` attempts have failed; then the delivery is ``failed``.
Pending deliveries live in the store, so those of a stopped server are sent after it
starts again. Redirects are not followed. Delivered and failed deliveries are kept for
:data:`KEEP_SECONDS` (30 days), then removed.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from layerstore.errors import Unavailable
from registry.webhooks.model import DELIVERED, FAILED, PENDING, Delivery, Webhook
from registry.webhooks.payload import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign
from registry.webhooks.store import WebhookStore

__all__ = ["DeliveryWorker", "Outcome", "post"]

POLL_SECONDS = 0.5
TIMEOUT_SECONDS = 10.0
MAX_BACKOFF = 3600.0
BATCH = 5
LEASE_SECONDS = BATCH * TIMEOUT_SECONDS + 30.0
"""A claimed batch is the claimer's for this long: enough to try each of its deliveries
once, so that no other worker takes one of them meanwhile."""
KEEP_SECONDS = 30 * 86400.0
PRUNE_SECONDS = 3600.0
log = logging.getLogger("registry.webhooks")


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: the response code (None if there was no answer) and the
    error (``""`` when delivered)."""

    code: int | None
    error: str

    @property
    def ok(self) -> bool:
        """Whether the receiver took it (2xx)."""
        return self.code is not None and 200 <= self.code < 300


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def post(hook: Webhook, delivery: Delivery, timeout: float = TIMEOUT_SECONDS) -> Outcome:
    """POST ``delivery``'s payload to ``hook`` (headers in :mod:`registry.webhooks.payload`)."""
    body = delivery.payload.encode()
    headers = {"Content-Type": "application/json", "User-Agent": "pybuild-registry-webhook",
               EVENT_HEADER: delivery.event_type, DELIVERY_HEADER: str(delivery.id)}
    if hook.secret:
        headers[SIGNATURE_HEADER] = sign(hook.secret, body)
    request = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=timeout) as response:
            response.read(65536)
            code = response.status
    except urllib.error.HTTPError as exc:
        return Outcome(exc.code, f"HTTP {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Outcome(None, f"{type(exc).__name__}: {reason}")
    if 200 <= code < 300:
        return Outcome(code, "")
    return Outcome(code, f"HTTP {code}")


class DeliveryWorker:
    """Sends the due deliveries of ``store`` in a thread until :meth:`close`."""

    def __init__(self, store: WebhookStore, *, max_attempts: int, retry_seconds: float
                 ) -> None:
        self.store = store
        self.max_attempts = max_attempts
        self.retry_seconds = retry_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pruned_at = 0.0
        self._thread = threading.Thread(target=self._run, name="registry-webhooks",
                                        daemon=True)

    def start(self) -> DeliveryWorker:
        """Start the thread."""
        self._thread.start()
        return self

    def wake(self) -> None:
        """Look for due deliveries now (new ones were queued)."""
        self._wake.set()

    def close(self) -> None:
        """Stop after the attempt in progress (a claimed delivery not sent is sent again
        once its lease runs out)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(TIMEOUT_SECONDS + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.run_once()
                self._prune()
            except Unavailable as exc:
                log.error("webhook deliveries failed: %s", exc)
                sent = 0
            except Exception:
                log.exception("webhook deliveries failed")
                sent = 0
            if not sent:
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()

    def _prune(self) -> None:
        now = time.time()
        if now - self._pruned_at >= PRUNE_SECONDS:
            self._pruned_at = now
            self.store.prune(now - KEEP_SECONDS)

    def run_once(self, now: float | None = None) -> int:
        """Claim and attempt the due deliveries once; how many were attempted."""
        claimed = self.store.claim(time.time() if now is None else now, LEASE_SECONDS, BATCH)
        for delivery, hook in claimed:
            if self._stop.is_set():
                break
            outcome = post(hook, delivery)
            self._finish(delivery, hook, outcome)
        return len(claimed)

    def _finish(self, delivery: Delivery, hook: Webhook, outcome: Outcome) -> None:
        now = time.time()
        attempts = delivery.attempts + 1
        if outcome.ok:
            state, next_at = DELIVERED, now
        elif attempts >= self.max_attempts:
            state, next_at = FAILED, now
            log.warning("webhook %s of project %s: delivery %d failed after %d attempts: %s",
                        hook.name, hook.project, delivery.id, attempts, outcome.error)
        else:
            state = PENDING
            next_at = now + min(MAX_BACKOFF, self.retry_seconds * 2 ** (attempts - 1))
        self.store.finish(delivery, state=state, next_at=next_at,
                          response_code=outcome.code, error=outcome.error, now=now)
