"""The webhook service the CLI and the API call: add, list and remove a project's
webhooks, list their deliveries, and turn audit events into deliveries (:meth:`emit`).

Events become deliveries as follows: a manifest push is ``PUSH_ARTIFACT``, a manifest or
tag delete ``DELETE_ARTIFACT`` (blob deletes send nothing), a push refused for a full quota
``QUOTA_EXCEED`` (:func:`registry.webhooks.quota_exceeded`). A webhook gets only the types
it was added for, and only for repositories of its project.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from registry.audit.events import DELETE, PUSH, QUOTA_EXCEEDED, AuditEvent, iso
from registry.config import Settings
from registry.webhooks.model import (
    DELETE_ARTIFACT,
    EVENT_NAMES,
    PENDING,
    PUSH_ARTIFACT,
    QUOTA_EXCEED,
    Delivery,
    Webhook,
    WebhookError,
    check_name,
    check_url,
    parse_events,
)
from registry.webhooks.payload import payload_of
from registry.webhooks.store import WebhookStore

__all__ = ["BLOB_DETAIL", "WebhookService", "delivery_doc", "event_type_of", "hook_doc"]

BLOB_DETAIL = "blob"
"""The ``detail`` of the audit event of a blob delete (which sends no webhook)."""
DEFAULT_EVENTS = ",".join(EVENT_NAMES)


def event_type_of(event: AuditEvent) -> str | None:
    """The Harbor event type an audit event sends, if any."""
    if event.action == PUSH:
        return PUSH_ARTIFACT
    if event.action == DELETE and event.detail != BLOB_DETAIL:
        return DELETE_ARTIFACT
    if event.action == QUOTA_EXCEEDED:
        return QUOTA_EXCEED
    return None


def _default_name(url: str) -> str:
    netloc = urlsplit(url).netloc.rpartition("@")[2].lower()
    return re.sub(r"[^a-z0-9._-]+", "-", netloc).strip("-._")[:64] or "webhook"


def hook_doc(hook: Webhook) -> dict[str, Any]:
    """A webhook as the CLI's ``--json`` and the API show it (never the secret)."""
    return {"name": hook.name, "project": hook.project, "url": hook.url,
            "events": list(hook.events), "signed": bool(hook.secret),
            "created": iso(hook.created_at)}


def delivery_doc(name: str, d: Delivery) -> dict[str, Any]:
    """A delivery of webhook ``name`` as the CLI's ``--json`` and the API show it."""
    return {"id": d.id, "webhook": name, "event": d.event_type, "state": d.state,
            "attempts": d.attempts, "response_code": d.response_code,
            "last_error": d.last_error, "created": iso(d.created_at),
            "updated": iso(d.updated_at),
            "next_attempt": iso(d.next_at) if d.state == PENDING else None}


@dataclass(frozen=True)
class WebhookService:
    """A project's webhooks over a :class:`~registry.webhooks.store.WebhookStore`. With
    ``settings``, adding and removing a webhook is recorded in the audit log as done by
    ``actor`` (subject, address). ``check_project`` (if given) refuses a webhook for a
    project that does not exist (:func:`registry.webhooks.projects.project_check`)."""

    store: WebhookStore
    settings: Settings | None = None
    check_project: Callable[[str], None] | None = None

    def _audit(self, action: str, project: str, detail: str,
               actor: tuple[str, str] | None) -> None:
        if self.settings is None:
            return
        from registry import audit

        audit.change(self.settings, action, project=project, detail=detail, actor=actor)

    def add(self, project: str, url: str, *, events: str | Sequence[str] = DEFAULT_EVENTS,
            secret: str = "", name: str | None = None,
            actor: tuple[str, str] | None = None) -> Webhook:
        """Add a webhook to ``project``; WebhookError naming the bad argument."""
        check_name(project, "PROJECT")
        check_url(url)
        types = parse_events(events if isinstance(events, str) else ",".join(events))
        name = check_name(name if name is not None else _default_name(url))
        if self.check_project is not None:
            self.check_project(project)
        hook = self.store.add(Webhook(0, project, name, url, types, secret, time.time()))
        self._audit("webhook.add", project, f"name={hook.name} url={hook.url} "
                    f"events={','.join(hook.events)}", actor)
        return hook

    def webhooks(self, project: str) -> list[Webhook]:
        """The webhooks of ``project``."""
        return self.store.hooks(check_name(project, "PROJECT"))

    def remove(self, project: str, name: str, actor: tuple[str, str] | None = None) -> None:
        """Remove webhook ``name`` of ``project`` and its deliveries; WebhookError if there
        is none."""
        if not self.store.remove(check_name(project, "PROJECT"), name):
            raise WebhookError(f"NAME {name!r}: project {project!r} has no such webhook")
        self._audit("webhook.remove", project, f"name={name}", actor)

    def deliveries(self, project: str, name: str | None = None, limit: int = 50
                   ) -> list[tuple[str, Delivery]]:
        """The newest deliveries of the project's webhooks (or of ``name``)."""
        if limit < 1:
            raise WebhookError(f"--limit must be a positive integer, not {limit}")
        return self.store.deliveries(check_name(project, "PROJECT"), name, limit)

    def emit(self, events: Sequence[AuditEvent], now: float | None = None) -> int:
        """Queue a delivery of each event to each webhook of its project that wants its
        type; how many were queued."""
        hooks: dict[str, list[Webhook]] = {}
        items: list[tuple[int, str, str]] = []
        for event in events:
            kind = event_type_of(event)
            if kind is None or not event.project:
                continue
            if event.project not in hooks:
                hooks[event.project] = self.store.hooks(event.project)
            for hook in hooks[event.project]:
                if hook.wants(kind):
                    items.append((hook.id, kind, payload_of(kind, event)))
        self.store.enqueue(items, time.time() if now is None else now)
        return len(items)
