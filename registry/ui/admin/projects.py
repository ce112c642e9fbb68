"""The project pages of the administration: the projects with their usage against quota
(a chart), creating one (system admins); one project's settings — visibility (its admins),
quota (system admins), deleting it when empty (its admins) — its members and their roles
(its admins manage them, its members see them), and what each of its repositories holds
(a chart). Everything goes through :class:`~registry.projects.service.ProjectService`, as
``registry project`` and ``/api/v1/projects`` do."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from registry.projects.model import (
    ADMIN,
    GUEST,
    ROLE_RANK,
    ROLES,
    Project,
    ProjectInvalid,
    Usage,
    format_size,
    parse_size,
)
from registry.projects.service import ProjectService
from registry.ui.admin.charts import Bar, usage_bars
from registry.ui.admin.common import (
    BASE,
    Flashes,
    act,
    field,
    projects,
    refusals,
    require_viewer,
    services,
    show,
)
from registry.ui.admin.usage import usage_by_repository
from registry.ui.session import Viewer

router = APIRouter()
CHART_PROJECTS = 50


def project_bars(rows: list[tuple[Project, Usage]]) -> list[Bar]:
    """One bar per project (the first :data:`CHART_PROJECTS`), largest first."""
    bars = [Bar(p.name, usage.bytes, p.quota, f"{BASE}/projects/{p.name}")
            for p, usage in rows[:CHART_PROJECTS]]
    bars.sort(key=lambda b: (-b.value, b.label))
    return bars


def usage_rows(service: ProjectService, listed: list[Project]) -> list[tuple[Project, Usage]]:
    """Each project with what it holds (one usage query a project)."""
    return [(p, service.usage(p.name)) for p in listed]


def projects_page(request: Request, flashes: Flashes | None = None, status: int = 200,
                  **_: Any) -> Response:
    """The projects the viewer may see, with their usage."""
    who = require_viewer(request, "manage projects")
    service = projects(request)
    with refusals():
        listed = service.list_projects(who.actor())
        rows = usage_rows(service, listed)
    chart = usage_bars(project_bars(rows), "Storage used by each project")
    return show(request, "admin/projects.html", "projects", here=f"{BASE}/projects",
                flashes=flashes, status=status, rows=rows, chart=chart,
                more=len(listed) > CHART_PROJECTS)


@router.get("/projects", include_in_schema=False)
def list_projects(request: Request) -> Response:
    """The projects page."""
    return projects_page(request)


def _quota(form: dict[str, str]) -> int | None:
    return parse_size(field(form, "quota", "none") or "none", "quota")


@router.post("/projects", include_in_schema=False)
async def create_project(request: Request) -> Response:
    """Create a project (system admins; the service refuses others)."""
    def create(form: dict[str, str]) -> str:
        who = require_viewer(request, "create projects")
        name = field(form, "name")
        project = projects(request).create(name, public=form.get("public") == "on",
                                           quota=_quota(form), actor=who.actor())
        return (f"project {project.name} created ({'public' if project.public else 'private'}"
                f", quota {format_size(project.quota)})")

    return await act(request, projects_page, create)


def _role_at_least(role: str | None, minimum: str) -> bool:
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[minimum]


def project_context(request: Request, name: str) -> tuple[Viewer, dict[str, Any]]:
    """The viewer and what every page of one project shows: the project, the viewer's
    role and what it may do there."""
    who = require_viewer(request, f"manage project {name}")
    service = projects(request)
    with refusals():
        view = service.show(name, who.actor())
    return who, {"project": view.project, "view": view, "role": view.role,
                 "is_member": view.role is not None,
                 "can_admin": _role_at_least(view.role, ADMIN),
                 "can_maintain": _role_at_least(view.role, "maintainer"),
                 "is_system_admin": who.is_admin}


def project_page(request: Request, name: str, flashes: Flashes | None = None,
                 status: int = 200, **_: Any) -> Response:
    """One project: settings, members, usage by repository."""
    _who, context = project_context(request, name)
    view = context["view"]
    rows: list[Any] = []
    more = False
    if context["is_member"]:
        with refusals():
            rows, more = usage_by_repository(services(request).metadata, name)
    bars = [Bar(r.name.removeprefix(name + "/"), r.bytes) for r in rows]
    usage = view.usage
    total = [Bar(name, usage.bytes if usage else 0, view.project.quota)]
    return show(request, "admin/project.html", "projects", here=f"{BASE}/projects/{name}",
                flashes=flashes, status=status, tab="settings", roles=ROLES,
                repositories=rows, more_repositories=more,
                total_chart=usage_bars(total, f"Storage used by project {name}"),
                chart=usage_bars(bars, f"Storage held by each repository of {name}"),
                **context)


@router.get("/projects/{name}", include_in_schema=False)
def show_project(request: Request, name: str) -> Response:
    """The project page."""
    return project_page(request, name)


@router.post("/projects/{name}", include_in_schema=False)
async def change_project(request: Request, name: str) -> Response:
    """Change the project: ``op`` is visibility, quota, add_member or remove_member."""
    def change(form: dict[str, str]) -> str:
        who = require_viewer(request, f"change project {name}")
        service = projects(request)
        op = form.get("op", "")
        if op == "visibility":
            public = field(form, "visibility") == "public"
            service.update(name, public=public, actor=who.actor())
            return f"project {name} is {'public' if public else 'private'} now"
        if op == "quota":
            quota = _quota(form)
            service.update(name, quota=quota, actor=who.actor())
            return f"the quota of project {name} is {format_size(quota)} now"
        if op == "add_member":
            member, added = service.add_member(name, field(form, "member"),
                                               field(form, "role", GUEST), who.actor())
            if added:
                return f"{member.name} added to project {name} as {member.role}"
            return f"{member.name} now has role {member.role} in project {name}"
        if op == "remove_member":
            member = service.remove_member(name, field(form, "member"), who.actor())
            return f"{member.name} ({member.role}) removed from project {name}"
        raise ProjectInvalid(f"op {op[:40]!r} is not an action of this page")

    return await act(request, project_page, change, name=name)


@router.post("/projects/{name}/delete", include_in_schema=False)
async def delete_project(request: Request, name: str) -> Response:
    """Delete an empty project (its admins); then the projects page."""
    def delete(form: dict[str, str]) -> str:
        who = require_viewer(request, f"delete project {name}")
        if field(form, "confirm", "") != name:
            raise ProjectInvalid(f"confirm: type the project's name ({name}) to delete it")
        projects(request).delete(name, who.actor())
        return f"project {name} deleted"

    def page(request: Request, flashes: Flashes | None = None, status: int = 200,
             **_: Any) -> Response:
        if status == 200:
            return projects_page(request, flashes)
        return project_page(request, name, flashes, status)

    return await act(request, page, delete)
