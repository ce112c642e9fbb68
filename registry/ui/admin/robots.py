"""A project's robot accounts (its admins and system admins): list them, make one (its
secret is shown once, on the page that made it), disable or enable, rotate the secret,
delete. Through :class:`~registry.robots.service.RobotService`, as ``registry robot`` and
``/api/v1/projects/{project}/robots`` do."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from registry.api.robots import robot_service
from registry.projects.model import ADMIN, ProjectInvalid
from registry.robots.service import Issued, RobotService
from registry.robots.values import ROBOT_PREFIX, robot_name
from registry.ui.admin.common import BASE, Flashes, act, field, projects, refusals, services, show
from registry.ui.admin.projects import project_context
from registry.ui.session import Viewer

router = APIRouter()
ACTIONS = ("pull", "push", "delete")


def _robots(request: Request, who: Viewer, name: str) -> RobotService:
    """The robot service, if the viewer is an admin of project ``name``."""
    with refusals():
        projects(request).require(who.actor(), name, ADMIN, "manage the robots of")
    return robot_service(services(request))


def robots_page(request: Request, name: str, flashes: Flashes | None = None,
                status: int = 200, issued: Issued | None = None, **_: Any) -> Response:
    """The project's robots (a new secret, once, in ``issued``)."""
    who, context = project_context(request, name)
    service = _robots(request, who, name)
    with refusals():
        robots = service.robots(name)
    return show(request, "admin/robots.html", "projects", here=f"{BASE}/projects/{name}/robots",
                flashes=flashes, status=status, tab="robots", robots=robots, actions=ACTIONS,
                issued=issued, **context)


@router.get("/projects/{name}/robots", include_in_schema=False)
def list_robots(request: Request, name: str) -> Response:
    """The robots page."""
    return robots_page(request, name)


def _full(project: str, given: str) -> str:
    full = given if given.startswith(ROBOT_PREFIX) else robot_name(project, given)
    if not full.startswith(f"{ROBOT_PREFIX}{project}+"):
        raise ProjectInvalid(f"robot {given[:80]!r} is not a robot of project {project}")
    return full


@router.post("/projects/{name}/robots", include_in_schema=False)
async def change_robots(request: Request, name: str) -> Response:
    """``op``: create, disable, enable, rotate or delete."""
    issued: list[Issued] = []

    def change(form: dict[str, str]) -> str:
        who, _ = project_context(request, name)
        service = _robots(request, who, name)
        actor = (who.principal.subject or who.name, who.address or "unknown")
        op = form.get("op", "")
        if op == "create":
            chosen = [a for a in ACTIONS if form.get(f"action_{a}") == "on"]
            if not chosen:
                raise ProjectInvalid("actions: tick at least one of pull, push, delete")
            made = service.create(name, field(form, "robot"), ",".join(chosen),
                                  field(form, "expires_days", "") or None,
                                  description=field(form, "description", ""), actor=actor)
            issued.append(made)
            return f"robot {made.name} created: copy its secret now, it is not shown again"
        full = _full(name, field(form, "robot"))
        if op in ("disable", "enable"):
            service.set_disabled(full, op == "disable", actor)
            return f"robot {full} {op}d"
        if op == "rotate":
            made = service.rotate(full, actor=actor)
            issued.append(made)
            return f"robot {full} has a new secret: copy it now, it is not shown again"
        if op == "delete":
            service.delete(full, actor)
            return f"robot {full} deleted"
        raise ProjectInvalid(f"op {op[:40]!r} is not an action of this page")

    def page(request: Request, flashes: Flashes | None = None, status: int = 200,
             **_: Any) -> Response:
        return robots_page(request, name, flashes, status, issued[0] if issued else None)

    return await act(request, page, change)
