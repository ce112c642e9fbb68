"""The pull-through cache as the ``/v2/`` dispatcher sees it: which repositories are served
from an upstream (all of them in mirror mode; those of proxy-cache projects), and the
handling of their requests (module docstring of :mod:`registry.proxy`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from starlette.responses import Response

from layerstore.digest import Digest
from registry.auth.access import DELETE
from registry.config import ConfigError, Settings
from registry.errors import BLOB_UNKNOWN, UNAVAILABLE, UNSUPPORTED, RegistryError
from registry.handlers.base import (
    Context,
    Endpoint,
    RawResponse,
    ReaderResponse,
    Services,
    json_response,
    next_link,
    pagination,
)
from registry.handlers.blobs import _blob_headers
from registry.names import parse_digest
from registry.proxy.blobs import BlobFetcher, Spool
from registry.proxy.counters import ProxyCounters
from registry.proxy.errors import (
    ProxyError,
    UpstreamInvalid,
    UpstreamRefused,
    UpstreamUnavailable,
)
from registry.proxy.manifests import ManifestCache, Route
from registry.proxy.upstream import Upstream
from registry.storage.threads import run_blocking

log = logging.getLogger("registry.proxy")

class Router(Protocol):
    """Finds the upstream of a repository of a proxy-cache project."""

    def __call__(self, name: str) -> tuple[Upstream, str] | None:
        """The upstream of ``name`` and the repository's name there, or ``None``."""
        ...

    def close(self) -> None:
        """Close the upstream connections."""
        ...


class ProxyService:
    """Serves cached repositories (module docstring). ``mirror`` is the upstream of the
    whole registry (mirror mode); ``router`` finds the upstream of a proxy-cache project's
    repository."""

    def __init__(self, services: Services, *, mirror: Upstream | None = None,
                 router: Router | None = None) -> None:
        self.services = services
        self.mirror = mirror
        self.router = router
        settings = services.settings
        self.counters = ProxyCounters(settings.metrics_dir / "proxy")
        self.manifests = ManifestCache(services, self.counters, settings.proxy_ttl)
        self.blobs = BlobFetcher(services, self.counters,
                                 Spool(settings.root / "run" / "proxy", services.blobs.driver))

    def route(self, name: str) -> Route | None:
        """Where ``name`` comes from, if it is a cached repository."""
        if self.mirror is not None:
            return Route(self.mirror, name, name)
        if self.router is not None:
            found = self.router(name)
            if found is not None:
                return Route(found[0], name, found[1], shared=True)
        return None

    def close(self) -> None:
        """Close the upstream connections."""
        if self.mirror is not None:
            self.mirror.close()
        if self.router is not None:
            self.router.close()

    def serves_any(self) -> bool:
        """Whether the cache is in use (mirror mode, or proxy-cache projects seen)."""
        return self.mirror is not None or bool(self.counters.collect())

    def render_metrics(self) -> str:
        """The cache's counters for ``/metrics``."""
        return self.counters.render()

    async def handle(self, ctx: Context, kind: str, endpoint: Endpoint, route: Route
                     ) -> Response:
        """Answer a request for a cached repository."""
        method = ctx.request.method
        if route.shared and endpoint.actions == (DELETE,):
            return await endpoint.handler(ctx)
        if endpoint.writes or kind in ("upload_start", "uploads"):
            raise RegistryError(UNSUPPORTED, f"{method} refused: repository {ctx.name!r} is a "
                                f"pull-through cache of upstream {route.upstream.describe()}; "
                                "push to the upstream instead")
        try:
            if kind == "manifests":
                await self.manifests.ensure(route, ctx.arg)
            elif kind == "blobs":
                answer = await self._blob(ctx, route, head=method == "HEAD")
                if answer is not None:
                    return answer
        except ProxyError as exc:
            raise _unavailable(exc) from None
        if kind == "tags":
            listed = await self._tags(ctx, route)
            if listed is not None:
                return listed
        return await endpoint.handler(ctx)

    async def _tags(self, ctx: Context, route: Route) -> Response | None:
        """The upstream's tags of the repository (as distribution's proxy lists them);
        ``None`` to list the cached ones when the upstream does not answer."""
        n, last = pagination(ctx.request)
        try:
            found = await run_blocking(route.upstream.tags, route.remote, n, last)
        except ProxyError as exc:
            log.warning("listing the cached tags of %s: %s", ctx.name, exc)
            return None
        if found is None:
            return None
        tags, more = found
        headers = {}
        if more and n and tags:
            headers["Link"] = next_link(f"/v2/{ctx.name}/tags/list", n, tags[-1])
        return json_response({"name": ctx.name, "tags": tags}, headers=headers)

    async def _blob(self, ctx: Context, route: Route, *, head: bool) -> Response | None:
        digest = parse_digest(ctx.arg, ctx.name)
        if await ctx.services.reads.blob_size(ctx.name, digest) is not None:
            self.counters.hit("blob")
            return None
        size: int | None = -1
        if route.shared and await run_blocking(self.blobs.stored_size, digest) is not None:
            # Stored for another repository: linked here only if the upstream has it here.
            size = await run_blocking(route.upstream.head_blob, route.remote, digest)
            if size is None:
                raise _blob_unknown(route, digest)
        if await run_blocking(self.blobs.link, ctx.name, digest) is not None:
            self.counters.hit("blob")
            return None
        if head:
            if size == -1:
                size = await run_blocking(route.upstream.head_blob, route.remote, digest)
            if size is None:
                raise _blob_unknown(route, digest)
            return RawResponse(200, _blob_headers(digest, size))
        opened = await run_blocking(self.blobs.open, route, digest)
        if opened is None:
            return None
        size, reader = opened
        return ReaderResponse(200, _blob_headers(digest, size), reader, size)


def _blob_unknown(route: Route, digest: Digest) -> RegistryError:
    return RegistryError(BLOB_UNKNOWN, f"blob {digest} is unknown to repository "
                         f"{route.remote!r} of upstream {route.upstream.describe()}",
                         detail={"digest": str(digest)})


def _unavailable(exc: ProxyError) -> RegistryError:
    return RegistryError(UNAVAILABLE, str(exc), headers={"Retry-After": "5"})


def mirror_upstream(settings: Settings) -> Upstream | None:
    """The upstream of mirror mode, if ``proxy_remote`` is set."""
    if not settings.proxy_remote:
        return None
    return Upstream(settings.proxy_remote, username=settings.proxy_username,
                    password=settings.proxy_password)


def check_mirror(settings: Settings, warn: Callable[[str], None]) -> None:
    """Reach the mirror's upstream once at start-up: ConfigError naming the setting when it
    is no registry, does not resolve or refuses the credentials; ``warn`` when it cannot be
    reached now (what is cached is still served)."""
    upstream = mirror_upstream(settings)
    if upstream is None:
        return
    try:
        upstream.check()
    except UpstreamUnavailable as exc:
        text = str(exc)
        if "not known" in text or "resolve" in text or "No address" in text:
            raise ConfigError(f"proxy_remote: {text}") from None
        warn(f"{text}; serving what is cached until it answers")
    except (UpstreamRefused, UpstreamInvalid) as exc:
        raise ConfigError(str(exc)) from None
    finally:
        upstream.close()
