"""The audit log: all of it, filtered by project, user and time, for system admins; a
project's newest events for its maintainers and admins — what ``registry audit`` and
``GET /api/v1/audit`` list, through :func:`registry.audit.query`."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from registry import audit
from registry.audit.events import AuditQuery, parse_since
from registry.projects.model import MAINTAINER
from registry.ui.admin.common import (
    BASE,
    projects,
    refusals,
    require_system_admin,
    services,
    show,
)
from registry.ui.admin.projects import project_context

router = APIRouter()
EVENTS = 100
MAX_EVENTS = 1000


@router.get("/audit", include_in_schema=False)
def audit_log(request: Request, project: str = "", user: str = "", since: str = "",
              limit: str = "") -> Response:
    """The audit log, newest first (``user`` ``-``: anonymous clients)."""
    require_system_admin(request, "read the audit log")
    with refusals():
        count = min(int(limit), MAX_EVENTS) if limit.isdigit() and int(limit) > 0 \
            else EVENTS
        selection = AuditQuery(project=project[:255] or None,
                               user=None if not user else "" if user == "-" else user[:64],
                               since=parse_since(since[:64]) if since else None,
                               limit=count)
        events = audit.query(services(request).settings, selection)
    return show(request, "admin/audit.html", "audit", here=f"{BASE}/audit", events=events,
                project=project[:255], user=user[:64], since=since[:64], limit=count)


@router.get("/projects/{name}/activity", include_in_schema=False)
def activity(request: Request, name: str) -> Response:
    """The project's newest audit events (its maintainers and admins)."""
    who, context = project_context(request, name)
    with refusals():
        projects(request).require(who.actor(), name, MAINTAINER, "read the audit log of")
        events = audit.query(services(request).settings, AuditQuery(project=name,
                                                                     limit=EVENTS))
    return show(request, "admin/activity.html", "projects",
                here=f"{BASE}/projects/{name}/activity", tab="activity", events=events,
                **context)
