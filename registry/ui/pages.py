"""The browsing pages: projects → repositories → tags → one manifest."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from registry.ui.render import render

router = APIRouter()


@router.get("/", include_in_schema=False)
async def projects(request: Request) -> Response:
    """The projects the viewer may see."""
    return render(request, "projects.html", projects=[])
