"""The ASGI application: ``create_app(settings)`` wires storage, metadata, authorization and
metrics behind the ``/v2/`` routes, health checks and ``/metrics``.

Every response carries ``Docker-Distribution-Api-Version: registry/2.0``; every request is
counted and logged in one line (method, path, status, bytes, milliseconds); anything that
escapes a handler is logged with its traceback and answered 500 with a JSON error body.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import logging
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.api import PREFIX as API_PREFIX
from registry.api import build_api
from registry.audit.runtime import start_events
from registry.auth.access import AllowAll, Authorizer
from registry.auth.token_endpoint import token_routes
from registry.config import HANDOFF_ENV, ConfigError, Settings
from registry.errors import (
    UNSUPPORTED,
    RegistryError,
    error_response,
    internal_error_response,
    unavailable_response,
)
from registry.handlers import V2App
from registry.handlers.base import ROUTE_KEY, Services
from registry.handlers.misc import health, metrics
from registry.locking import push_guard, use_cluster_lock
from registry.metadata.backends import open_metadata
from registry.metadata.pglocks import cluster_lock_for
from registry.metadata.reads import hot_reads
from registry.metadata.store import MetadataUnavailable
from registry.metrics import Metrics
from registry.projects.backends import open_project_store
from registry.projects.policy import ProjectPolicy, ProjectRoles
from registry.projects.quota import QuotaGuard
from registry.proxy.projects import ProjectRouter
from registry.proxy.service import ProxyService, mirror_upstream
from registry.storage.backends import s3_driver, storage_driver
from registry.storage.blobs import BlobService
from registry.storage.errors import BackendMisconfigured, BackendUnavailable
from registry.storage.legacy import LegacyUploads
from registry.storage.manifests import ManifestService
from registry.tagpolicy.service import open_tag_policy, projects_of

API_VERSION = (b"docker-distribution-api-version", b"registry/2.0")
access_log = logging.getLogger("registry.access")
log = logging.getLogger("registry")
_THREADS = 32


class AccessMiddleware:
    """Adds the API version header, counts and logs each request, and answers 500 for
    anything that escapes the application."""

    def __init__(self, app: ASGIApp, metrics: Metrics, log_requests: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        head = scope["method"] == "HEAD"
        status = 0
        sent = 0
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def stamping_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), API_VERSION]
            elif message["type"] == "http.response.body" and not head:
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, stamping_send)
        except MetadataUnavailable as exc:
            log.error("answering %s %s: %s", scope["method"], scope["path"], exc)
            if status == 0:
                await unavailable_response()(scope, counting_receive, stamping_send)
        except Exception:
            log.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            if status == 0:
                await internal_error_response()(scope, counting_receive, stamping_send)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get(ROUTE_KEY) or _route_of(scope["path"])
            method = scope["method"]
            self.metrics.observe(method, route, status, sent, received, elapsed)
            if self.log_requests:
                query = scope.get("query_string", b"")
                path = scope["path"] + ("?" + query.decode("latin-1") if query else "")
                access_log.info("%s %s %d %d %.1fms", method, path, status, sent,
                                elapsed * 1000)


class RegistryApp(FastAPI):
    """The FastAPI application with a short way in for ``/v2/``: those requests go straight
    to :attr:`v2` (the access middleware around the ``/v2/`` dispatcher, which answers
    every error itself) instead of through the framework's middleware and router; the
    other routes (health, metrics, token, lifespan) take the framework's way."""

    v2: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.v2 is not None and scope["type"] == "http" and scope["path"].startswith(
                "/v2/"):
            await self.v2(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _route_of(path: str) -> str:
    if path in ("/metrics", "/healthz", "/debug/health"):
        return path.strip("/").replace("debug/", "")
    if path.startswith(API_PREFIX + "/"):
        return "api"
    return "unknown"


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    path = request.scope["path"][:200]
    if exc.status_code == 405:
        err = RegistryError(UNSUPPORTED, f"{request.method} is not supported on {path!r}")
    else:
        err = RegistryError(UNSUPPORTED, f"no endpoint {path!r}", status=exc.status_code,
                            detail={"path": path})
    return error_response(err)


def load_authorizer(settings: Settings) -> Authorizer:
    """The authorizer ``settings.authorizer`` names (``module:factory``); without one, the
    one of ``settings.auth_mode`` (AllowAll for ``none``)."""
    if not settings.authorizer:
        if settings.auth_mode == "none":
            return AllowAll()
        from registry.auth.authorizers import build_authorizer

        return build_authorizer(settings)
    module_name, _, attribute = settings.authorizer.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"authorizer {settings.authorizer!r} cannot be loaded: {exc}") from None
    return factory(settings)


def check_storage(settings: Settings) -> None:
    """Reach the storage backend once; ConfigError naming the setting and the cause."""
    if settings.storage != "s3":
        return
    try:
        s3_driver(settings).check()
    except BackendMisconfigured as exc:
        raise ConfigError(str(exc)) from None
    except BackendUnavailable as exc:
        raise ConfigError(f"s3.endpoint {settings.s3_endpoint or 'AWS'}: {exc}") from None


def project_roles(settings: Settings, authorizer: Authorizer) -> ProjectRoles:
    """The project roles the authorizer consults (one cache for both), else its own."""
    policy = getattr(getattr(authorizer, "logins", None), "policy", None)
    if isinstance(policy, ProjectPolicy):
        return policy.roles
    return ProjectRoles(open_project_store(settings))


def open_services(settings: Settings, authorizer: Authorizer | None = None) -> Services:
    """Open the stores of ``settings`` and build what the handlers share."""
    metadata = open_metadata(settings)
    use_cluster_lock(cluster_lock_for(metadata))
    driver = storage_driver(settings)
    adopt = None
    if settings.storage == "filesystem":
        adopt = LegacyUploads(driver, metadata, settings.root,
                              lambda: push_guard(settings.root)).adopt
    blobs = BlobService(driver, metadata, cache_bytes=settings.manifest_cache_bytes,
                        lock_root=settings.root, adopt=adopt)
    authorizer = authorizer or load_authorizer(settings)
    roles = project_roles(settings, authorizer)
    services = Services(settings=settings, metadata=metadata, blobs=blobs,
                    manifests=ManifestService(metadata, blobs),
                    authorizer=authorizer,
                    metrics=Metrics(settings.metrics_dir),
                    reads=hot_reads(metadata, settings.metadata_url),
                    projects=roles, quota=QuotaGuard(roles, metadata),
                    tag_policy=open_tag_policy(settings, metadata,
                                               projects_of(roles.store, "project")))
    mirror = mirror_upstream(settings)
    if mirror is not None:
        proxy = ProxyService(services, mirror=mirror)
    else:
        proxy = ProxyService(services, router=ProjectRouter(settings, roles.store, driver))
    return dataclasses.replace(services, proxy=proxy)


async def _housekeeping(services: Services) -> None:
    tick = 0
    while True:
        await asyncio.sleep(0.1)
        tick += 1
        try:
            await services.blobs.reap_idle()
            if tick % 10 == 0:
                services.metrics.flush()
        except Exception:
            log.exception("housekeeping failed")


def create_app(settings: Settings, *, authorizer: Authorizer | None = None) -> FastAPI:
    """The registry application for ``settings`` (one per server process)."""
    services = open_services(settings, authorizer)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(_THREADS, thread_name_prefix="registry"))
        task = asyncio.ensure_future(_housekeeping(services))
        events = start_events(settings)
        log.info("registry serving %s (pid %d, read-only: %s)", settings.root, os.getpid(),
                 settings.read_only)
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await loop.run_in_executor(None, events.close)
            await services.blobs.close()
            await services.reads.close()
            services.metrics.flush()
            if services.tag_policy is not None:
                services.tag_policy.close()
            if services.proxy is not None:
                services.proxy.close()
            services.metadata.close()

    v2 = V2App(services)
    app = RegistryApp(title="pybuild registry", docs_url=None, redoc_url=None,
                      openapi_url=None, lifespan=lifespan)
    app.v2 = AccessMiddleware(v2, services.metrics, settings.access_log)
    app.state.services = services
    app.router.routes.extend([
        Route("/v2/{path:path}", v2),
        Route("/healthz", health(services), methods=["GET", "HEAD"]),
        Route("/debug/health", health(services), methods=["GET", "HEAD"]),
        Route("/metrics", metrics(services), methods=["GET", "HEAD"]),
        *token_routes(services.authorizer),
        Mount(API_PREFIX, build_api(services)),
    ])
    app.add_exception_handler(HTTPException, _http_error)
    if settings.ui:
        from registry.ui import mount_ui

        mount_ui(app, services)
    app.add_middleware(AccessMiddleware, metrics=services.metrics,
                       log_requests=settings.access_log)
    return app


def app_factory() -> FastAPI:
    """The application for a uvicorn worker: settings come from the serving process
    through the environment."""
    text = os.environ.get(HANDOFF_ENV)
    settings = Settings.from_json(text) if text else Settings()
    return create_app(settings)
