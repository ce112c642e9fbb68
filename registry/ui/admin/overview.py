"""The administration's first page: what the viewer may manage, the storage each project
it may see uses against its quota (a chart), and for system admins the last garbage
collection."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from registry import gcruns
from registry.ui.admin.charts import usage_bars
from registry.ui.admin.common import BASE, projects, refusals, require_viewer, services, show
from registry.ui.admin.projects import CHART_PROJECTS, project_bars, usage_rows

router = APIRouter()


@router.get("/", include_in_schema=False)
def overview(request: Request) -> Response:
    """The administration's overview."""
    who = require_viewer(request, "manage the registry")
    service = projects(request)
    with refusals():
        listed = service.list_projects(who.actor())
    last_gc = None
    if who.is_admin:
        runs = gcruns.last_runs(services(request).settings, limit=1)
        last_gc = runs[0] if runs else None
    chart = usage_bars(project_bars(usage_rows(service, listed[:CHART_PROJECTS])),
                       "Storage used by each project")
    return show(request, "admin/overview.html", "overview", here=f"{BASE}/",
                chart=chart, projects=listed, more=len(listed) > CHART_PROJECTS,
                last_gc=last_gc, settings=services(request).settings)
