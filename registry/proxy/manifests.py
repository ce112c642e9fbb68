"""Manifests of a pull-through cache: fetched from the upstream when missing, tags
revalidated after the TTL, stored without the completeness check of a push (the blobs a
cached manifest names arrive when clients ask for them).

When a tag was revalidated is kept through the storage driver at
``proxy/tags/<repository>/_tags/<tag>`` (JSON ``{"digest", "checked"}``), so every server
process and replica sharing the storage sees it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from layerstore.digest import Digest
from layerstore.errors import InvalidArgument
from registry import audit
from registry.audit.events import AuditEvent
from registry.client.manifests import FetchedManifest
from registry.errors import MANIFEST_UNKNOWN, RegistryError
from registry.handlers.base import Services
from registry.handlers.manifests import parse_manifest
from registry.metadata.reads import ManifestHead
from registry.names import check_tag, is_digest_reference, parse_digest
from registry.proxy.counters import ProxyCounters
from registry.proxy.errors import ProxyError
from registry.proxy.upstream import Upstream
from registry.storage.errors import PathNotFound, StorageError
from registry.storage.threads import run_blocking

log = logging.getLogger("registry.proxy")
FETCH = "proxy.fetch"
UPSTREAM_ERROR = "proxy.upstream_error"


@dataclass(frozen=True)
class Revalidated:
    """When a tag was last found upstream, pointing at ``digest``."""

    digest: Digest
    checked: float


def tag_path(repository: str, tag: str) -> str:
    """The driver path of a tag's revalidation record."""
    return f"proxy/tags/{repository}/_tags/{tag}"


@dataclass(frozen=True)
class Route:
    """A repository served from an upstream: ``local`` as clients name it, ``remote`` as
    the upstream does; ``shared`` when the registry holds content of its own besides the
    cache (proxy-cache projects), so stored content is linked into a cached repository only
    once the upstream confirms it has it there."""

    upstream: Upstream
    local: str
    remote: str
    shared: bool = False


class ManifestCache:
    """Brings manifests of cached repositories into the local store (module docstring)."""

    def __init__(self, services: Services, counters: ProxyCounters, ttl: int) -> None:
        self.services = services
        self.counters = counters
        self.ttl = ttl

    # Revalidation records.

    def revalidated(self, repository: str, tag: str) -> Revalidated | None:
        """The revalidation record of a tag, if there is a readable one."""
        try:
            doc = json.loads(self.services.blobs.driver.get_content(tag_path(repository, tag)))
            return Revalidated(Digest.parse(doc["digest"]), float(doc["checked"]))
        except (PathNotFound, ValueError, KeyError, TypeError, InvalidArgument):
            return None

    def mark(self, repository: str, tag: str, digest: Digest) -> None:
        """Record that the upstream has ``tag`` at ``digest`` now."""
        data = json.dumps({"digest": str(digest), "checked": time.time()}).encode()
        try:
            self.services.blobs.driver.put_content(tag_path(repository, tag), data)
        except StorageError as exc:
            log.warning("cannot record the revalidation of %s:%s: %s", repository, tag, exc)

    # Fetching.

    async def ensure(self, route: Route, reference: str) -> None:
        """Make ``reference`` of ``route.local`` as current as the caching rules want, so
        that the ordinary handler answers it; MANIFEST_UNKNOWN if the upstream does not
        have it, a ProxyError if the upstream is needed and fails (the service answers
        503); a cached tag is then served as last revalidated."""
        reads = self.services.reads
        if is_digest_reference(reference):
            parse_digest(reference, route.local)
            if await reads.manifest_head(route.local, reference) is not None:
                self.counters.hit("manifest")
                return
            self.counters.miss("manifest")
            fetched = await self._fetch(route, reference)
            await self._store(route, fetched, ())
            return
        tag = check_tag(reference, route.local)
        cached = await reads.manifest_head(route.local, tag)
        if cached is not None and await self._fresh(route.local, tag, cached):
            self.counters.hit("manifest")
            return
        try:
            upstream = await run_blocking(route.upstream.head_manifest, route.remote, tag)
        except ProxyError as exc:
            self._failed(route, tag, exc)
            if cached is not None:
                log.warning("serving %s:%s as last revalidated: %s", route.local, tag, exc)
                self.counters.hit("manifest")
                return
            raise
        if upstream is None:
            raise _unknown(route, tag)
        if cached is not None and cached.digest == upstream.digest:
            self.counters.hit("manifest")
            await run_blocking(self.mark, route.local, tag, upstream.digest)
            return
        self.counters.miss("manifest")
        known = await reads.manifest_head(route.local, str(upstream.digest))
        if known is not None:
            await self._tag(route.local, known.digest, tag)
        else:
            fetched = await self._fetch(route, str(upstream.digest))
            await self._store(route, fetched, (tag,))
        await run_blocking(self.mark, route.local, tag, upstream.digest)

    async def _fresh(self, repository: str, tag: str, cached: ManifestHead) -> bool:
        if self.ttl <= 0:
            return False
        record = await run_blocking(self.revalidated, repository, tag)
        return (record is not None and record.digest == cached.digest
                and time.time() - record.checked < self.ttl)

    async def _fetch(self, route: Route, reference: str) -> FetchedManifest:
        try:
            fetched = await run_blocking(route.upstream.get_manifest, route.remote, reference)
        except ProxyError as exc:
            self._failed(route, reference, exc)
            raise
        if fetched is None:
            raise _unknown(route, reference)
        self.counters.fetched(len(fetched.raw))
        return fetched

    def _failed(self, route: Route, reference: str, exc: Exception) -> None:
        self.counters.error()
        audit.record(AuditEvent(action=UPSTREAM_ERROR, repository=route.local,
                                reference=reference, detail=str(exc)[:500]),
                     self.services.settings)

    async def _store(self, route: Route, fetched: FetchedManifest, tags: tuple[str, ...]
                     ) -> None:
        services = self.services
        where = f"manifest {fetched.descriptor.digest} of {route.remote} from upstream " \
                f"{route.upstream.describe()}"
        parsed = await run_blocking(parse_manifest, fetched.raw, fetched.descriptor.media_type,
                                    fetched.descriptor.digest.algorithm, where)
        record = parsed.record

        def store() -> None:
            services.blobs.store_small(record.digest, fetched.raw)
            services.metadata.put_manifest(route.local, record, tags)

        await services.blobs.run_guarded(store)
        services.blobs.remember(record.digest, fetched.raw)
        audit.record(AuditEvent(action=FETCH, repository=route.local,
                                reference=",".join(tags) or str(record.digest),
                                digest=str(record.digest),
                                detail=f"manifest from {route.upstream.url}/{route.remote}"),
                     services.settings)

    async def _tag(self, repository: str, digest: Digest, tag: str) -> None:
        meta = self.services.metadata

        def retag() -> None:
            record = meta.get_manifest(repository, digest)
            if record is not None:
                meta.put_manifest(repository, record, (tag,))

        await self.services.blobs.run_guarded(retag)


def _unknown(route: Route, reference: str) -> RegistryError:
    return RegistryError(MANIFEST_UNKNOWN, f"manifest {reference} is unknown to repository "
                         f"{route.remote!r} of upstream {route.upstream.describe()}",
                         detail={"name": route.local, "reference": reference})
