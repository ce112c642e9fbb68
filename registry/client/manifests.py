"""Manifests over the wire: fetching (verified by digest), resolving an index for a
platform, and putting.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import httpx

from layerstore.digest import Digest
from layerstore.errors import InvalidArgument
from layerstore.oci import Descriptor, Index, Manifest, MediaType, Platform
from layerstore.oci import parse_manifest_or_index as _parse
from registry.client.auth import repository_scope
from registry.client.errors import DigestMismatch, PlatformNotFound, ProtocolError
from registry.client.transport import Transport

MAX_MANIFEST_BYTES = 4 << 20
#: What the client understands, most specific first.
ACCEPT = ", ".join((MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST,
                    MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST))
_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v1+prettyjws")
_GENERIC = frozenset({"", "application/json", "application/octet-stream", "text/plain"})
#: arm64 images without a variant are v8; 32-bit arm ones v7.
_DEFAULT_VARIANTS = {"arm64": "v8", "arm": "v7"}


@dataclass(frozen=True)
class FetchedManifest:
    """A manifest or index as the registry sent it, verified: descriptor, bytes, parsed."""

    descriptor: Descriptor
    raw: bytes
    document: Manifest | Index


def _read_limited(response: httpx.Response, what: str, registry: str) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_MANIFEST_BYTES:
        raise ProtocolError(f"registry {registry} sent a {declared}-byte manifest for {what} "
                            f"(at most {MAX_MANIFEST_BYTES} accepted)", registry=registry)
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_MANIFEST_BYTES:
            raise ProtocolError(f"registry {registry} sent a manifest over "
                                f"{MAX_MANIFEST_BYTES} bytes for {what}", registry=registry)
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(header: str, raw: bytes, what: str, registry: str) -> str:
    media_type = header.split(";", 1)[0].strip().lower()
    if media_type in _SCHEMA1:
        raise ProtocolError(f"{what} on registry {registry} is a Docker schema 1 manifest, "
                            "which is not supported (push it again with a current client)",
                            registry=registry, code="MANIFEST_INVALID")
    if media_type in MediaType.MANIFESTS | MediaType.INDEXES:
        return media_type
    if media_type in _GENERIC:
        try:
            document = _parse(raw, what)
        except InvalidArgument:
            pass
        else:
            if isinstance(document, Index):
                return document.media_type or MediaType.OCI_INDEX
            return document.media_type or MediaType.OCI_MANIFEST
    raise ProtocolError(f"registry {registry} sent {what} as {media_type or 'no media type'}, "
                        "not an image manifest or index", registry=registry,
                        code="MANIFEST_INVALID")


def fetch_manifest(transport: Transport, repository: str, reference: str, *,
                   what: str, expected: Descriptor | None = None) -> FetchedManifest:
    """GET ``/v2/<repository>/manifests/<reference>`` and verify it: against the digest
    when ``reference`` is one (or ``expected`` is given), else against the registry's
    ``Docker-Content-Digest``. DigestMismatch when the bytes disagree."""
    def get() -> tuple[bytes, httpx.Headers]:
        response = transport.request(
            "GET", f"/v2/{repository}/manifests/{reference}", what=what,
            scopes=(repository_scope(repository, "pull"),), headers={"Accept": ACCEPT},
            stream=True)
        with contextlib.closing(response):
            return _read_limited(response, what, transport.registry), response.headers

    raw, headers = transport.retrying(get, what)
    header_type = headers.get("content-type", "")
    header_digest = headers.get("docker-content-digest", "")
    wanted = expected.digest if expected is not None else None
    if wanted is None and reference.count(":") == 1 and not reference.startswith(":"):
        with contextlib.suppress(InvalidArgument):
            wanted = Digest.parse(reference)
    if wanted is None and header_digest:
        with contextlib.suppress(InvalidArgument):
            wanted = Digest.parse(header_digest)
    actual = Digest.from_bytes(raw, wanted.algorithm if wanted is not None else "sha256")
    if wanted is not None and actual != wanted:
        raise DigestMismatch(f"manifest {what} from registry {transport.registry} has digest "
                             f"{actual}, not {wanted}: the registry sent other bytes than it "
                             "promised", registry=transport.registry, digest=str(wanted),
                             repository=repository)
    if expected is not None and len(raw) != expected.size:
        raise DigestMismatch(f"manifest {expected.digest} of {repository} on registry "
                             f"{transport.registry} is {len(raw)} bytes, not {expected.size}",
                             registry=transport.registry, digest=str(expected.digest),
                             repository=repository)
    media_type = _media_type(header_type, raw, what, transport.registry)
    try:
        document = _parse(raw, f"manifest {what}")
    except InvalidArgument as exc:
        raise ProtocolError(f"registry {transport.registry} sent an invalid manifest for "
                            f"{what}: {exc}", registry=transport.registry,
                            code="MANIFEST_INVALID") from None
    if isinstance(document, Index) != (media_type in MediaType.INDEXES):
        raise ProtocolError(f"registry {transport.registry} labelled {what} {media_type} but "
                            "its content says otherwise", registry=transport.registry,
                            code="MANIFEST_INVALID")
    descriptor = Descriptor(media_type=media_type, digest=actual, size=len(raw))
    return FetchedManifest(descriptor, raw, document)


def _variant(platform: Platform) -> str | None:
    return platform.variant or _DEFAULT_VARIANTS.get(platform.architecture)


def platform_matches(wanted: Platform, candidate: Platform | None) -> bool:
    """Whether an index entry's platform serves ``wanted`` (same os and architecture; the
    variant too when ``wanted`` names one)."""
    if candidate is None:
        return False
    if (candidate.os, candidate.architecture) != (wanted.os, wanted.architecture):
        return False
    return wanted.variant is None or _variant(candidate) == _variant(wanted)


def select_platform(index: Index, wanted: Platform, *, what: str,
                    digest: Digest) -> Descriptor:
    """The image manifest of ``index`` for ``wanted``; PlatformNotFound listing the
    platforms it has otherwise. An exact variant match wins over a looser one."""
    images = [m for m in index.manifests if m.media_type in MediaType.MANIFESTS]
    matches = [m for m in images if platform_matches(wanted, m.platform)]
    if matches:
        exact = [m for m in matches if m.platform is not None
                 and _variant(m.platform) == _variant(wanted)]
        return (exact or matches)[0]
    have = sorted({str(m.platform) for m in images if m.platform is not None
                   and m.platform.os != "unknown"})
    listed = ", ".join(have) if have else "none"
    raise PlatformNotFound(f"{what} (index {digest}) has no image for {wanted}; it has: "
                           f"{listed}")


def put_manifest(transport: Transport, repository: str, reference: str, media_type: str,
                 raw: bytes, *, what: str) -> Digest:
    """PUT a manifest under a tag or digest; the digest the registry reports (ours when it
    reports none)."""
    return put_manifest_answer(transport, repository, reference, media_type, raw,
                               what=what)[0]


def put_manifest_answer(transport: Transport, repository: str, reference: str,
                        media_type: str, raw: bytes, *, what: str
                        ) -> tuple[Digest, httpx.Headers]:
    """:func:`put_manifest`, also returning the response headers (a registry that
    implements the referrers API answers a manifest with a ``subject`` with ``OCI-Subject``)."""
    response = transport.request(
        "PUT", f"/v2/{repository}/manifests/{reference}", what=what,
        scopes=(repository_scope(repository, "pull", "push"),),
        headers={"Content-Type": media_type}, body=raw, ok=(200, 201, 202))
    reported: Digest | None = None
    with contextlib.suppress(InvalidArgument):
        reported = Digest.parse(response.headers.get("docker-content-digest", ""))
    ours = Digest.from_bytes(raw, reported.algorithm if reported is not None else "sha256")
    if reported is not None and reported != ours:
        raise DigestMismatch(f"registry {transport.registry} stored manifest {what} as "
                             f"{reported}, but its bytes hash to {ours}",
                             registry=transport.registry, digest=str(ours),
                             repository=repository)
    return ours, response.headers


__all__ = ["ACCEPT", "FetchedManifest", "fetch_manifest", "platform_matches",
           "put_manifest", "put_manifest_answer", "select_platform"]
