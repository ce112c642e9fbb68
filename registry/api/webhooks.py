"""A project's webhooks: ``GET|POST /api/v1/projects/{project}/webhooks``,
``DELETE /api/v1/projects/{project}/webhooks/{name}`` and the delivery log
``GET /api/v1/projects/{project}/webhooks/deliveries``, for the project's admins and system
admins (Harbor's rule). They call :class:`~registry.webhooks.service.WebhookService`, as
``registry webhook`` does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from registry.api.deps import Caller, ServicesDep, UserCaller
from registry.api.errors import CONFLICT, INVALID, NOT_FOUND
from registry.api.projects import actor, answer, project_service
from registry.audit import client_address
from registry.config import Settings
from registry.errors import RegistryError
from registry.handlers.base import Services
from registry.projects.model import ADMIN
from registry.webhooks.model import EVENT_NAMES, WebhookError
from registry.webhooks.projects import project_check
from registry.webhooks.service import WebhookService, delivery_doc, hook_doc
from registry.webhooks.store import open_webhook_store

router = APIRouter(tags=["webhooks"])


class NewWebhook(BaseModel):
    """A webhook to add: where to POST, which events (default all), the signing secret
    (empty: unsigned) and its name (default: from the URL's host)."""

    url: str
    events: list[str] = Field(default_factory=lambda: list(EVENT_NAMES))
    secret: str = ""
    name: str | None = None


@contextmanager
def _service(settings: Settings) -> Iterator[WebhookService]:
    store = open_webhook_store(settings)
    try:
        yield WebhookService(store, settings, project_check(settings))
    except WebhookError as exc:
        text = str(exc).lstrip("-")
        if "has a webhook of that name" in text:
            raise RegistryError(CONFLICT, text) from None
        if "has no such webhook" in text:
            raise RegistryError(NOT_FOUND, text) from None
        raise RegistryError(INVALID, text) from None
    finally:
        store.close()


def _actor(caller: Caller, request: Request) -> tuple[str, str]:
    return caller.principal.subject or "", client_address(request.client)


def _project_admin(caller: Caller, svc: Services, project: str) -> None:
    """404 if ``project`` does not exist, 401/403 unless the caller is its admin."""
    service = project_service(svc)
    answer(caller, lambda: service.require(actor(caller), project, ADMIN,
                                           "manage the webhooks of"))


@router.get("/projects/{project}/webhooks", summary="A project's webhooks")
def list_webhooks(project: str, caller: UserCaller, svc: ServicesDep
                  ) -> list[dict[str, Any]]:
    """The project's webhooks by name (their secrets are not shown)."""
    _project_admin(caller, svc, project)
    with _service(svc.settings) as service:
        return [hook_doc(h) for h in service.webhooks(project)]


@router.post("/projects/{project}/webhooks", status_code=201, summary="Add a webhook")
def add_webhook(project: str, body: NewWebhook, caller: UserCaller, svc: ServicesDep,
                request: Request) -> dict[str, Any]:
    """Send the project's events to ``url``."""
    _project_admin(caller, svc, project)
    if body.secret == "" and "secret" in body.model_fields_set:
        raise RegistryError(INVALID, "secret: empty (leave it out for unsigned deliveries)")
    with _service(svc.settings) as service:
        hook = service.add(project, body.url, events=body.events, secret=body.secret,
                           name=body.name, actor=_actor(caller, request))
    return hook_doc(hook)


@router.get("/projects/{project}/webhooks/deliveries", summary="The delivery log")
def deliveries(project: str, caller: UserCaller, svc: ServicesDep, name: str | None = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict[str, Any]]:
    """The newest deliveries of the project's webhooks (or of webhook ``name``)."""
    _project_admin(caller, svc, project)
    with _service(svc.settings) as service:
        return [delivery_doc(n, d) for n, d in service.deliveries(project, name, limit)]


@router.delete("/projects/{project}/webhooks/{name}", status_code=204,
               summary="Remove a webhook")
def remove_webhook(project: str, name: str, caller: UserCaller, svc: ServicesDep,
                   request: Request) -> Response:
    """Remove the webhook and its deliveries."""
    _project_admin(caller, svc, project)
    with _service(svc.settings) as service:
        service.remove(project, name, actor=_actor(caller, request))
    return Response(status_code=204)
