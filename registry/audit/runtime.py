"""The audit writer, the webhook delivery worker and the replication worker (which the
audit writer tells about pushes) of one server process, started and stopped together by
the application's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from registry import audit
from registry.audit.recorder import AuditRecorder
from registry.audit.store import AuditStore, open_audit_store
from registry.config import Settings
from registry.replication.worker import ReplicationWorker
from registry.webhooks.service import WebhookService
from registry.webhooks.store import WebhookStore, open_webhook_store
from registry.webhooks.worker import DeliveryWorker

__all__ = ["EventRuntime", "start_events"]


@dataclass(frozen=True)
class EventRuntime:
    """The running recorder and worker, and their stores."""

    settings: Settings
    audit_store: AuditStore
    webhook_store: WebhookStore
    recorder: AuditRecorder
    worker: DeliveryWorker
    replication: ReplicationWorker | None = None

    def close(self) -> None:
        """Write the queued audit events and their deliveries, stop the worker, close the
        stores (blocking: run it in a thread from async code)."""
        audit.uninstall(self.settings)
        self.recorder.close()
        self.worker.close()
        if self.replication is not None:
            self.replication.close()
        self.webhook_store.close()
        self.audit_store.close()


def start_events(settings: Settings) -> EventRuntime:
    """Open the stores, start the threads and make :func:`registry.audit.record` queue
    the events of ``settings`` in this process."""
    audit_store = open_audit_store(settings)
    webhook_store = open_webhook_store(settings)
    worker = DeliveryWorker(webhook_store, max_attempts=settings.webhook_max_attempts,
                            retry_seconds=settings.webhook_retry_seconds).start()
    replication = ReplicationWorker(settings).start()
    recorder = AuditRecorder(audit_store, WebhookService(webhook_store),
                             delivered=worker.wake,
                             max_age=settings.audit_max_age * 86400,
                             observers=(replication.notify,)).start()
    audit.install(settings, recorder)
    return EventRuntime(settings, audit_store, webhook_store, recorder, worker, replication)
