"""Webhooks: a project's push, delete and quota-exceeded events POSTed as JSON in Harbor's
payload shape (:mod:`registry.webhooks.payload`), signed with HMAC-SHA256, retried with
backoff by the server's delivery worker (:mod:`registry.webhooks.worker`), each attempt
kept in a delivery log.

The quota check calls :func:`quota_exceeded` when it refuses a push; the event is logged in
the audit log and sent to the project's webhooks that take ``quota_exceeded``.
"""

from __future__ import annotations

from registry.audit.events import QUOTA_EXCEEDED, AuditEvent
from registry.config import Settings

__all__ = ["is_quota_refusal", "quota_exceeded"]

_QUOTA_DETAIL = frozenset({"project", "quota", "usage"})


def is_quota_refusal(detail: object) -> bool:
    """Whether an error's ``detail`` is that of a push refused for a full project quota
    (:mod:`registry.projects.quota`: project, quota, usage, …)."""
    return isinstance(detail, dict) and detail.keys() >= _QUOTA_DETAIL


def quota_exceeded(settings: Settings, repository: str, *, subject: str = "",
                   address: str = "", digest: str = "", reference: str = "",
                   details: str = "", host: str = "") -> AuditEvent:
    """Record that a push to ``repository`` by ``subject`` from ``address`` was refused for
    a full quota (``details``: the quota and the usage, in a line): an audit event of action
    ``quota_exceeded`` and a ``QUOTA_EXCEED`` delivery to each webhook of the project that
    takes it. Returns the event."""
    from registry import audit

    event = AuditEvent(QUOTA_EXCEEDED, subject, address, repository, reference, digest,
                       details, host=host)
    audit.record(event, settings)
    return event
