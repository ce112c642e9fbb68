"""A project's webhooks (its admins and system admins): list them, add one (where to POST,
which events, an optional signing secret), remove one, and the newest deliveries with their
state. Through :class:`~registry.webhooks.service.WebhookService`, as ``registry webhook``
and ``/api/v1/projects/{project}/webhooks`` do."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from registry.projects.model import ADMIN, ProjectInvalid
from registry.ui.admin.common import (
    BASE,
    Flashes,
    act,
    audit_actor,
    field,
    projects,
    refusals,
    services,
    show,
)
from registry.ui.admin.projects import project_context
from registry.ui.session import Viewer
from registry.webhooks.model import EVENT_NAMES
from registry.webhooks.projects import project_check
from registry.webhooks.service import WebhookService
from registry.webhooks.store import open_webhook_store

router = APIRouter()
DELIVERIES = 30
T = TypeVar("T")


@contextmanager
def _webhooks(request: Request, who: Viewer, name: str) -> Iterator[WebhookService]:
    """The webhook service, if the viewer is an admin of project ``name``."""
    with refusals():
        projects(request).require(who.actor(), name, ADMIN, "manage the webhooks of")
    settings = services(request).settings
    store = open_webhook_store(settings)
    try:
        yield WebhookService(store, settings, project_check(settings))
    finally:
        store.close()


def _with(request: Request, who: Viewer, name: str,
          call: Callable[[WebhookService], T]) -> T:
    with _webhooks(request, who, name) as service, refusals():
        return call(service)


def webhooks_page(request: Request, name: str, flashes: Flashes | None = None,
                  status: int = 200, **_: Any) -> Response:
    """The project's webhooks and their newest deliveries."""
    who, context = project_context(request, name)
    hooks, deliveries = _with(request, who, name, lambda s: (
        s.webhooks(name), s.deliveries(name, None, DELIVERIES)))
    return show(request, "admin/webhooks.html", "projects",
                here=f"{BASE}/projects/{name}/webhooks", flashes=flashes, status=status,
                tab="webhooks", hooks=hooks, deliveries=deliveries, events=EVENT_NAMES,
                **context)


@router.get("/projects/{name}/webhooks", include_in_schema=False)
def list_webhooks(request: Request, name: str) -> Response:
    """The webhooks page."""
    return webhooks_page(request, name)


@router.post("/projects/{name}/webhooks", include_in_schema=False)
async def change_webhooks(request: Request, name: str) -> Response:
    """``op``: add or remove."""
    def change(form: dict[str, str]) -> str:
        who, _ = project_context(request, name)
        op = form.get("op", "")
        if op == "add":
            events = [e for e in EVENT_NAMES if form.get(f"event_{e}") == "on"]
            if not events:
                raise ProjectInvalid("events: tick at least one of " + ", ".join(EVENT_NAMES))
            hook = _with(request, who, name, lambda s: s.add(
                name, field(form, "url"), events=events, secret=form.get("secret", ""),
                name=field(form, "hook", "") or None, actor=audit_actor(who)))
            return f"webhook {hook.name} added: {', '.join(hook.events)} go to {hook.url}"
        if op == "remove":
            hook_name = field(form, "hook")
            _with(request, who, name, lambda s: s.remove(name, hook_name, audit_actor(who)))
            return f"webhook {hook_name} removed"
        raise ProjectInvalid(f"op {op[:40]!r} is not an action of this page")

    return await act(request, webhooks_page, change, name=name)
