"""The management API under ``/api/v1/``: JSON, authenticated by the registry's users and
tokens (:mod:`registry.api.deps`), documented by its own OpenAPI page at ``/api/v1/docs``
(the schema at ``/api/v1/openapi.json``).

Each feature keeps its routes in a module of this package that defines ``router`` (a
FastAPI ``APIRouter`` whose paths are relative to ``/api/v1``); :data:`ROUTER_MODULES`
lists them and :func:`build_api` assembles them. Handlers call the feature's service layer,
never storage directly, so the CLI and the API share one implementation.
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter, FastAPI

from registry.api.errors import install_error_handlers
from registry.handlers.base import Services

PREFIX = "/api/v1"
ROUTER_MODULES: tuple[str, ...] = (
    "registry.api.system",
    "registry.api.projects",
    "registry.api.tagpolicy",
    "registry.api.audit",
    "registry.api.webhooks",
    "registry.api.robots",
)


def api_router() -> APIRouter:
    """One router holding the routes of every module of :data:`ROUTER_MODULES`."""
    router = APIRouter()
    for name in ROUTER_MODULES:
        router.include_router(importlib.import_module(name).router)
    return router


def build_api(services: Services) -> FastAPI:
    """The ``/api/v1`` application (mounted by :func:`registry.app.create_app`)."""
    api = FastAPI(title="pybuild registry management API", version="v1",
                  docs_url="/docs", redoc_url=None, openapi_url="/openapi.json")
    api.state.services = services
    api.include_router(api_router())
    install_error_handlers(api)
    return api
