"""What every management page shares: who may see it, the services it calls, reading a
posted form (CSRF-checked), and turning the services' refusals into the UI's errors.

A page is a GET that renders it and a POST to the same address whose ``op`` field names
the action; the POST acts and renders the page again with a message: ``ok`` saying what was
done, or ``error`` with the service's one-line refusal (and its status: 403 for an action
the viewer may not do, 404 for something that does not exist, 400 for bad input). Nothing
is changed by a refused action.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from registry.api.projects import project_service
from registry.audit.events import AuditError
from registry.auth.users import UserError
from registry.errors import RegistryError
from registry.handlers.base import Services
from registry.projects.model import (
    ProjectDenied,
    ProjectError,
    ProjectExists,
    ProjectNotEmpty,
    ProjectNotFound,
)
from registry.projects.service import ProjectService
from registry.robots.values import RobotError, RobotNotFound
from registry.tagpolicy.errors import TagPolicyError, UnknownProject, UnknownRule
from registry.ui.errors import UIError, UIForbidden, UILoginRequired, UINotFound
from registry.ui.render import PREFIX, render
from registry.ui.session import Viewer, logins_of, require_csrf, viewer
from registry.webhooks.model import WebhookError

BASE = PREFIX + "/admin"
MAX_FIELD = 4096

Flashes = list[tuple[str, str]]
Page = Callable[..., Response]


def services(request: Request) -> Services:
    """The server's shared services."""
    found: Services = request.app.state.services
    return found


def projects(request: Request) -> ProjectService:
    """The project service over the server's stores (the one the API builds)."""
    return project_service(services(request))


def require_viewer(request: Request, doing: str = "manage the registry") -> Viewer:
    """The logged-in viewer; UILoginRequired for an anonymous visitor."""
    who = viewer(request)
    if who is None:
        if logins_of(services(request)) is None:
            raise UIForbidden(f"no one may {doing} here: this registry's access is decided "
                              f"by the authorizer {services(request).settings.authorizer} "
                              "and it has no users to log in with; use the registry "
                              "commands")
        raise UILoginRequired(f"log in to {doing}")
    return who


def require_system_admin(request: Request, doing: str) -> Viewer:
    """The viewer, who must be a system admin (the config's ``admins``); UIForbidden
    naming what was refused otherwise."""
    who = require_viewer(request, doing)
    if not who.is_admin:
        raise UIForbidden(f"{who.name} may not {doing}: only system admins (the config's "
                          "admins) may")
    return who


def audit_actor(who: Viewer) -> tuple[str, str]:
    """Who the audit log names for the viewer's changes: (subject, address)."""
    return who.principal.subject or who.name, who.address or "unknown"


def field(form: dict[str, str], name: str, default: str | None = None) -> str:
    """A form field, stripped; UIError naming it when it is missing and has no default."""
    value = form.get(name)
    if value is None or (value.strip() == "" and default is None):
        if default is not None:
            return default
        raise UIError(f"{name}: this field is required")
    return value.strip()


async def posted(request: Request) -> dict[str, str]:
    """The posted form's text fields, once its CSRF token was checked (403 otherwise)."""
    form = await request.form()
    require_csrf(request, form)
    fields: dict[str, str] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            if len(value) > MAX_FIELD:
                raise UIError(f"{key[:40]}: longer than {MAX_FIELD} characters")
            fields.setdefault(key, value)
    return fields


@contextmanager
def refusals() -> Iterator[None]:
    """Raise the services' errors as the UI's: refused → 403, missing → 404, conflicting
    or malformed → 400, each with the service's one-line message."""
    try:
        yield
    except ProjectDenied as exc:
        raise UIForbidden(f"refused: {exc}") from None
    except (ProjectNotFound, RobotNotFound, UnknownRule, UnknownProject) as exc:
        raise UINotFound(str(exc)) from None
    except (ProjectExists, ProjectNotEmpty) as exc:
        raise UIError(str(exc), 409) from None
    except (ProjectError, RobotError, TagPolicyError, WebhookError, UserError,
            AuditError) as exc:
        raise UIError(str(exc).lstrip("-")) from None
    except RegistryError as exc:
        raise UIError(exc.message, exc.code.status) from None


async def act(request: Request, page: Page, action: Callable[[dict[str, str]], str],
              **page_args: Any) -> Response:
    """Answer a POST: check the form's CSRF token, run ``action(form)`` (in a worker
    thread) and render ``page(request, flashes=..., status=..., **page_args)`` with the
    message it returned, or with the refusal and its status."""
    form = await posted(request)

    def run() -> Response:
        try:
            with refusals():
                message = action(form)
        except UIError as exc:
            return page(request, flashes=[("error", exc.message)], status=exc.status,
                        **page_args)
        return page(request, flashes=[("ok", message)], **page_args)

    return await run_in_threadpool(run)


def show(request: Request, template: str, section: str, *, here: str,
         flashes: Flashes | None = None, status: int = 200, **context: Any) -> Response:
    """Render a management page: ``section`` marks its link in the administration's
    navigation, ``here`` is the address its forms post to."""
    return render(request, template, status=status, flashes=flashes or [], section=section,
                  here=here, **context)
