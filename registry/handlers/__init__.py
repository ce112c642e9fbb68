"""The route table of ``/v2/`` and the dispatcher that runs it.

Each route kind maps HTTP methods to an :class:`Endpoint` that declares the repository
actions it needs (``pull`` to read, ``pull,push`` to write, ``delete`` to delete; the
catalog needs ``registry:catalog:*``). The dispatcher validates the repository name,
authorizes, refuses writes in read-only mode, runs the handler and turns every failure into
the spec's error body: a client can never cause a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from layerstore.errors import Unavailable
from registry.audit import client_address
from registry.auth.access import CATALOG, DELETE, PULL, PUSH
from registry.auth.access import Scope as AccessScope
from registry.errors import (
    TOOMANYREQUESTS,
    UNSUPPORTED,
    RegistryError,
    error_response,
    from_storage_error,
    internal_error_response,
    unavailable_response,
)
from registry.handlers import blobs, catalog, manifests, misc, referrers, tags, uploads
from registry.handlers.base import ROUTE_KEY, Context, Endpoint, Match, Services, match_v2
from registry.metadata.store import MetadataUnavailable
from registry.names import check_name
from registry.storage.errors import BackendMisconfigured, BackendUnavailable, StorageError
from registry.webhooks import is_quota_refusal, quota_exceeded

log = logging.getLogger("registry.handlers")

_READ = (PULL,)
_WRITE = (PULL, PUSH)
_DELETE = (DELETE,)

ROUTES: Mapping[str, Mapping[str, Endpoint]] = {
    "base": {
        "GET": Endpoint(misc.base), "HEAD": Endpoint(misc.base),
    },
    "catalog": {
        "GET": Endpoint(catalog.list_repositories),
    },
    "tags": {
        "GET": Endpoint(tags.list_tags, _READ),
    },
    "manifests": {
        "GET": Endpoint(manifests.get, _READ),
        "HEAD": Endpoint(manifests.head, _READ),
        "PUT": Endpoint(manifests.put, _WRITE, writes=True),
        "DELETE": Endpoint(manifests.delete, _DELETE, writes=True),
    },
    "blobs": {
        "GET": Endpoint(blobs.get, _READ),
        "HEAD": Endpoint(blobs.head, _READ),
        "DELETE": Endpoint(blobs.delete, _DELETE, writes=True),
    },
    "upload_start": {
        "POST": Endpoint(uploads.start, _WRITE, writes=True),
    },
    "uploads": {
        "GET": Endpoint(uploads.status, _WRITE),
        "PATCH": Endpoint(uploads.patch, _WRITE, writes=True),
        "PUT": Endpoint(uploads.finish, _WRITE, writes=True),
        "DELETE": Endpoint(uploads.cancel, _WRITE, writes=True),
    },
    "referrers": {
        "GET": Endpoint(referrers.list_referrers, _READ),
    },
}


async def dispatch(request: Request, services: Services) -> Response:
    """Route a ``/v2/…`` request and run its handler; errors propagate as exceptions."""
    path: str = request.scope["path"]
    found = match_v2(path[4:]) if path.startswith("/v2/") else None
    if found is None:
        request.scope[ROUTE_KEY] = "unknown"
        raise RegistryError(UNSUPPORTED, f"no endpoint {path[:200]!r} in the OCI "
                            "distribution API", status=404, detail={"path": path[:200]})
    route = found.route
    request.scope[ROUTE_KEY] = route
    methods = ROUTES[route]
    endpoint = methods.get(request.method)
    if endpoint is None:
        allowed = ", ".join(methods)
        raise RegistryError(UNSUPPORTED, f"{request.method} is not supported on "
                            f"{path[:200]!r} (allowed: {allowed})",
                            headers={"Allow": allowed})
    name = check_name(found.name) if found.name else ""
    if route == "catalog":
        scopes: tuple[AccessScope, ...] = (CATALOG,)
    elif name:
        scopes = (AccessScope("repository", name, endpoint.actions),)
    else:
        scopes = ()
    identity = await services.authorizer.authorize(request, scopes)
    cached = services.proxy.route(name) if services.proxy is not None and name else None
    if cached is not None:
        assert services.proxy is not None
        return await services.proxy.handle(Context(request, services, name, found.arg,
                                                   identity), route, endpoint, cached)
    if endpoint.writes:
        settings = services.settings
        if settings.read_only:
            raise RegistryError(UNSUPPORTED, f"the registry is read-only: {request.method} "
                                f"{path[:200]!r} refused")
        if endpoint.actions == _DELETE and not settings.delete_enabled:
            raise RegistryError(UNSUPPORTED, "deletion is disabled on this registry")
    try:
        return await endpoint.handler(Context(request, services, name, found.arg, identity))
    except RegistryError as err:
        if name and is_quota_refusal(err.entries[0].detail):
            _report_quota(request, services, name, found, identity.subject, err)
        raise


def _report_quota(request: Request, services: Services, name: str, found: Match,
                  subject: str | None, err: RegistryError) -> None:
    """A push refused for a full quota goes to the audit log and the webhooks."""
    detail = err.entries[0].detail
    quota_exceeded(services.settings, name, subject=subject or "",
                   address=client_address(request.client),
                   digest=str(detail.get("digest", "")),
                   reference=found.arg if found.route == "manifests" else "",
                   details=err.message, host=request.headers.get("host", ""))


class V2App:
    """The ASGI application behind ``/v2/``: dispatch, then answer errors per the spec."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await dispatch(request, self.services)
        except RegistryError as err:
            response = error_response(err)
        except MetadataUnavailable as exc:
            log.error("answering %s %s: %s", request.method, scope["path"], exc)
            response = unavailable_response()
        except StorageError as err:
            if isinstance(err, BackendUnavailable | BackendMisconfigured):
                log.error("storage backend failed answering %s %s: %s", request.method,
                          scope["path"], err)
            response = error_response(from_storage_error(err))
        except Unavailable as exc:
            response = error_response(RegistryError(
                TOOMANYREQUESTS, f"the registry is busy: {exc}; retry",
                headers={"Retry-After": "1"}))
        except Exception:
            log.exception("unexpected error answering %s %s", request.method, scope["path"])
            response = internal_error_response()
        await response(scope, receive, send)


__all__ = ["ROUTES", "Services", "V2App", "dispatch"]
