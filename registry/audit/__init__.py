"""The audit log: who pushed, pulled, deleted or changed what, when, from which address.

Anything that does something worth logging calls :func:`record` with an
:class:`~registry.audit.events.AuditEvent`. In a server process the event is queued and
written off the request path by the process's :class:`~registry.audit.recorder.AuditRecorder`
(:func:`install`); elsewhere (the ``registry`` command) it is written at once to the store
of ``settings``. Events that concern webhooks (pushes, deletes, full quotas) also become
webhook deliveries (:mod:`registry.webhooks`).

Configuration changes made through the CLI or the API are recorded by their services:
those of projects and tag policies are given a :func:`change_recorder` when they are built
(:mod:`registry.audit.changes`); others call :func:`change`, e.g.::

    from registry import audit

    # The CLI: the operating-system user, address "local".
    audit.change(settings, "project.create", project="team", detail="public=false")
    # The API: the caller and its address.
    audit.change(settings, "robot.create", project="team", detail="name=robot$team+ci",
                 actor=(caller.principal.subject or "", audit.client_address(request.client)))
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from layerstore.errors import LayerstoreError, Unavailable
from registry.audit.changes import ActorAddress, ChangeRecorder, change_event
from registry.audit.events import AuditEvent, AuditQuery
from registry.audit.recorder import AuditRecorder
from registry.audit.store import is_unavailable, open_audit_store
from registry.config import Settings

__all__ = ["AuditEvent", "AuditQuery", "ChangeRecorder", "change", "change_recorder",
           "client_address", "install", "query", "record", "record_all", "request_event",
           "uninstall"]

_recorders: dict[str, AuditRecorder] = {}
_guard = threading.Lock()


def _key(settings: Settings) -> str:
    return settings.metadata_url or str(settings.root)


def install(settings: Settings, recorder: AuditRecorder) -> None:
    """Let ``recorder`` take the events :func:`record` gets for ``settings`` in this
    process (the server does this at start-up)."""
    with _guard:
        _recorders[_key(settings)] = recorder


def uninstall(settings: Settings) -> None:
    """Undo :func:`install` (at shutdown)."""
    with _guard:
        _recorders.pop(_key(settings), None)


def record(event: AuditEvent, settings: Settings | None = None) -> None:
    """Log ``event`` in the audit log of ``settings``: queued in a server process (see the
    module docstring), written at once elsewhere. Without ``settings``, the one recorder
    installed in this process takes it (ValueError if there is none)."""
    if settings is None:
        with _guard:
            recorders = list(_recorders.values())
        if len(recorders) != 1:
            raise ValueError("registry.audit.record: pass the settings (no single audit "
                             "log is open in this process)")
        recorders[0].add(event)
        return
    record_all([event], settings)


def record_all(events: Sequence[AuditEvent], settings: Settings) -> None:
    """Log ``events`` in the audit log of ``settings``, as :func:`record` does (written at
    once, outside a server process, in one batch)."""
    if not events:
        return
    recorder = _recorders.get(_key(settings))
    if recorder is not None:
        for event in events:
            recorder.add(event)
        return
    from registry.webhooks.service import WebhookService
    from registry.webhooks.store import open_webhook_store

    store = open_audit_store(settings)
    hooks = open_webhook_store(settings)
    try:
        direct = AuditRecorder(store, WebhookService(hooks))
        for event in events:
            direct.add(event)
        direct.flush()
    finally:
        hooks.close()
        store.close()


@dataclass(frozen=True)
class _SettingsRecorder:
    settings: Settings

    def __call__(self, events: Sequence[AuditEvent]) -> None:
        try:
            record_all(events, self.settings)
        except Unavailable:
            raise
        except Exception as exc:
            if not (isinstance(exc, LayerstoreError) or is_unavailable(exc)):
                raise
            done = ", ".join(sorted({e.action for e in events}))
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise Unavailable(f"{done}: done, but the audit log cannot be written: "
                              f"{first}") from None


def change_recorder(settings: Settings) -> ChangeRecorder:
    """The :class:`~registry.audit.changes.ChangeRecorder` that logs in the audit log of
    ``settings`` (what the project and tag policy services are given)."""
    return _SettingsRecorder(settings)


def change(settings: Settings, action: str, *, project: str = "", repository: str = "",
           detail: str = "", actor: ActorAddress = None) -> AuditEvent:
    """Record a configuration change ``action`` (``project.create``, ``robot.disable``, …)
    of ``project`` (or ``repository``) by ``actor`` (subject, address; default: the
    operating-system user at address ``local``, for the ``registry`` command); ``detail``
    says what changed in a line. Returns the event."""
    event = change_event(action, actor, project=project, repository=repository,
                         detail=detail)
    record(event, settings)
    return event


def query(settings: Settings, selection: AuditQuery) -> list[AuditEvent]:
    """The events of the audit log of ``settings`` that ``selection`` selects, newest
    first (what ``registry audit`` and the API list)."""
    store = open_audit_store(settings)
    try:
        return store.query(selection)
    finally:
        store.close()


def client_address(scope_client: tuple[str, int] | None) -> str:
    """The client address of a request (``request.client``): the peer, or the address a
    trusted proxy names (uvicorn's ``--forwarded-allow-ips``, ``$FORWARDED_ALLOW_IPS``,
    127.0.0.1 by default, rewrites the peer from ``X-Forwarded-For``)."""
    return scope_client[0] if scope_client else "unknown"


def request_event(action: str, request: object, subject: str | None, repository: str,
                  reference: str = "", digest: str = "", detail: str = "") -> AuditEvent:
    """The event of a ``/v2/`` request (a starlette ``Request``) by ``subject`` (None:
    anonymous)."""
    client = getattr(request, "client", None)
    headers = getattr(request, "headers", {})
    return AuditEvent(action=action, subject=subject or "", address=client_address(client),
                      repository=repository, reference=reference, digest=digest,
                      detail=detail, host=headers.get("host", ""))
