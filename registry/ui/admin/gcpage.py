"""Garbage collection (system admins): whether a collection is running, the last runs of
``registry gc`` with what each removed (from the audit log, :mod:`registry.gcruns`), and a
chart of the bytes each run freed."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from registry import gcruns
from registry.ui.admin.charts import Bar, usage_bars
from registry.ui.admin.common import BASE, refusals, require_system_admin, services, show
from registry.ui.render import when

router = APIRouter()
RUNS = 20


@router.get("/gc", include_in_schema=False)
def gc_status(request: Request) -> Response:
    """The GC page."""
    require_system_admin(request, "see garbage collection")
    settings = services(request).settings
    with refusals():
        runs = gcruns.last_runs(settings, RUNS)
    done = [r for r in runs if r.state == gcruns.DONE][:10]
    chart = usage_bars([Bar(when(r.started_at), r.number("bytes")) for r in done],
                       "Bytes freed by the last garbage collections")
    running = runs[0] if runs and runs[0].state == gcruns.RUNNING else None
    return show(request, "admin/gc.html", "gc", here=f"{BASE}/gc", runs=runs,
                running=running, chart=chart, root=str(settings.root))
