"""The web UI: server-rendered pages at ``/ui/`` of the registry's own port (``/``
redirects browsers there; other clients keep the spec-shaped 404), on by default, off with
``ui = false``.

:func:`mount_ui` adds everything to the registry application: :func:`ui_router` (the login
and browsing pages of :mod:`registry.ui.auth_pages` and :mod:`registry.ui.pages`, and the
management pages of ``registry.ui.admin`` when present), the static files of ``static/``
(served from ``/ui/static/``; nothing comes from elsewhere), and the handler that shows a
:class:`~registry.ui.errors.UIError` as an error page. Pages read and change the registry
only through the same service layer as the API and the CLI. ``README.md`` of this package
describes the interface the pages share (:mod:`registry.ui.session`,
:mod:`registry.ui.render`).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from fastapi import APIRouter, FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from registry.handlers.base import Services
from registry.ui.errors import UIError, UINotFound
from registry.ui.render import PREFIX, STATIC, render
from registry.ui.session import SessionKeys

STATIC_DIR = Path(__file__).parent / "static"
PAGE_MODULES: tuple[str, ...] = ("registry.ui.auth_pages", "registry.ui.pages")
ADMIN_MODULE = "registry.ui.admin"

__all__ = ["PREFIX", "mount_ui", "ui_router"]

_HEADINGS = {401: "Log in first", 403: "Not allowed", 404: "Not found"}


def ui_router() -> APIRouter:
    """The UI's routes (paths under :data:`~registry.ui.render.PREFIX`), with the
    management pages' router (``registry.ui.admin.router``) when that package exists."""
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    async def root(request: Request) -> Response:
        if "text/html" not in request.headers.get("accept", ""):
            raise HTTPException(404)
        return RedirectResponse(PREFIX + "/", status_code=302)

    @router.get(PREFIX, include_in_schema=False)
    async def bare() -> Response:
        return RedirectResponse(PREFIX + "/", status_code=302)

    for name in PAGE_MODULES:
        router.include_router(importlib.import_module(name).router, prefix=PREFIX)
    try:
        admin = importlib.import_module(ADMIN_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != ADMIN_MODULE:
            raise
    else:
        router.include_router(admin.router, prefix=PREFIX + "/admin")

    @router.get(PREFIX + "/{rest:path}", include_in_schema=False)
    async def unknown(rest: str) -> Response:
        raise UINotFound(f"no page {PREFIX}/{rest[:200]}")

    return router


async def _ui_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UIError)
    return render(request, "error.html", status=exc.status, code=exc.status,
                  message=exc.message, heading=_HEADINGS.get(exc.status, "Cannot do that"))


def mount_ui(app: FastAPI, services: Services) -> None:
    """Serve the UI from ``app`` (the registry application of ``services``)."""
    app.state.ui_keys = SessionKeys(services)
    app.mount(STATIC, StaticFiles(directory=str(STATIC_DIR)), name="ui-static")
    app.include_router(ui_router())
    app.add_exception_handler(UIError, _ui_error)
