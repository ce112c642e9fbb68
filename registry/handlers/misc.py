"""The API version check (``/v2/``), health checks and ``/metrics``."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from registry.errors import JSON_TYPE
from registry.handlers.base import Context, Services, json_response, respond
from registry.metrics import CONTENT_TYPE as METRICS_TYPE
from registry.replication.metrics import exposition as replication_metrics
from registry.storage.threads import run_blocking


async def base(ctx: Context) -> Response:
    """``GET /v2/``: 200 with an empty JSON object once the client may use the API."""
    return respond(200, body=b"{}", content_type=JSON_TYPE)


def health_problems(services: Services) -> dict[str, str]:
    """What keeps the registry from serving: unwritable storage, an unreadable database."""
    problems: dict[str, str] = {}
    storage = services.blobs.storage_problem()
    if storage is not None:
        problems["storage"] = storage
    try:
        services.metadata.repository_exists("health/check")
    except Exception as exc:
        problems["metadata"] = f"metadata store: {exc}"
    return problems


def health(services: Services) -> Callable[[Request], Awaitable[Response]]:
    """``GET /healthz`` and ``/debug/health``: 200 ``{}`` when healthy, else 503 with the
    problems by component."""

    async def endpoint(request: Request) -> Response:
        problems = await run_blocking(health_problems, services)
        return json_response(problems, 503 if problems else 200)

    return endpoint


def metrics(services: Services) -> Callable[[Request], Awaitable[Response]]:
    """``GET /metrics``: the Prometheus text exposition."""

    async def endpoint(request: Request) -> Response:
        gauges: dict[str, tuple[str, float]] = {}
        with contextlib.suppress(Exception):
            gauges["registry_upload_sessions_open"] = (
                "Blob upload sessions started and neither completed nor cancelled.",
                float(len(services.metadata.uploads())),
            )
        text = services.metrics.render(gauges)
        with contextlib.suppress(Exception):
            text += await run_blocking(replication_metrics, services.settings)
        if services.proxy is not None and services.proxy.serves_any():
            text += services.proxy.render_metrics()
        return respond(200, body=text.encode(), content_type=METRICS_TYPE)

    return endpoint
