"""Asking a registry what it holds: its repositories, the tags of a repository, and
whether a manifest exists (``HEAD``, without downloading it)."""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit

from layerstore.digest import Digest
from layerstore.errors import InvalidArgument
from layerstore.oci import Descriptor, MediaType
from registry.client.auth import repository_scope
from registry.client.credentials import CredentialSource
from registry.client.errors import ProtocolError
from registry.client.manifests import ACCEPT
from registry.client.reference import Reference, parse_reference
from registry.client.settings import ClientSettings
from registry.client.transport import Transport

PAGE_SIZE = 1000
MAX_PAGES = 1000


def _next_link(header: str) -> str | None:
    """The target of ``Link: <url>; rel="next"``."""
    for part in header.split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") or "rel=next" in params.replace(" ", ""):
            return target.strip().strip("<>")
    return None


def _transport(ref: Reference, settings: ClientSettings | None,
               credentials: CredentialSource | None, transport: Transport | None
               ) -> tuple[Transport, bool]:
    if transport is not None:
        return transport, False
    return Transport(ref.registry, settings, credentials=credentials), True


def list_tags(ref: Reference | str, settings: ClientSettings | None = None, *,
              credentials: CredentialSource | None = None,
              transport: Transport | None = None) -> list[str]:
    """Every tag of ``ref``'s repository, following the registry's pagination."""
    ref = parse_reference(ref) if isinstance(ref, str) else ref
    client, own = _transport(ref, settings, credentials, transport)
    try:
        tags: list[str] = []
        path: str | None = f"/v2/{ref.repository}/tags/list?n={PAGE_SIZE}"
        for _ in range(MAX_PAGES):
            if path is None:
                break
            response = client.request("GET", path, what=f"tags of {ref.name}",
                                      scopes=(repository_scope(ref.repository, "pull"),))
            try:
                page = response.json().get("tags") or []
            except (ValueError, AttributeError):
                raise ProtocolError(f"registry {client.registry} sent a malformed tag list "
                                    f"for {ref.name}", registry=client.registry) from None
            tags.extend(str(t) for t in page)
            link = _next_link(response.headers.get("link", ""))
            if link is not None and urlsplit(link).netloc not in ("",
                                                                  urlsplit(client.base_url)
                                                                  .netloc):
                link = None
            path = link
        return tags
    finally:
        if own:
            client.close()


def list_repositories(transport: Transport) -> list[str]:
    """Every repository the registry of ``transport`` lists in ``/v2/_catalog``, following
    its pagination (what the credentials may see)."""
    names: list[str] = []
    path: str | None = f"/v2/_catalog?n={PAGE_SIZE}"
    for _ in range(MAX_PAGES):
        if path is None:
            break
        response = transport.request("GET", path, what="the repository catalog",
                                     scopes=("registry:catalog:*",))
        try:
            page = response.json().get("repositories") or []
        except (ValueError, AttributeError):
            raise ProtocolError(f"registry {transport.registry} sent a malformed catalog",
                                registry=transport.registry) from None
        names.extend(str(n) for n in page)
        link = _next_link(response.headers.get("link", ""))
        if link is not None and urlsplit(link).netloc not in (
                "", urlsplit(transport.base_url).netloc):
            link = None
        path = link
    return names


def head_manifest(ref: Reference | str, settings: ClientSettings | None = None, *,
                  credentials: CredentialSource | None = None,
                  transport: Transport | None = None) -> Descriptor | None:
    """The descriptor of the manifest ``ref`` names (media type, digest, size) from a
    ``HEAD``; ``None`` when the registry does not have it."""
    ref = parse_reference(ref) if isinstance(ref, str) else ref
    client, own = _transport(ref, settings, credentials, transport)
    try:
        response = client.request(
            "HEAD", f"/v2/{ref.repository}/manifests/{ref.manifest_reference}",
            what=str(ref), scopes=(repository_scope(ref.repository, "pull"),),
            headers={"Accept": ACCEPT}, ok=(200, 404))
        if response.status_code == 404:
            return None
        media_type = response.headers.get("content-type", "").split(";", 1)[0].strip()
        digest = ref.digest
        with contextlib.suppress(InvalidArgument):
            digest = Digest.parse(response.headers.get("docker-content-digest", ""))
        length = response.headers.get("content-length", "")
        if digest is None or not length.isdigit():
            raise ProtocolError(f"registry {client.registry} answered HEAD {ref} without "
                                "Docker-Content-Digest and Content-Length",
                                registry=client.registry)
        if media_type not in MediaType.MANIFESTS | MediaType.INDEXES:
            media_type = MediaType.OCI_MANIFEST
        return Descriptor(media_type=media_type, digest=digest, size=int(length))
    finally:
        if own:
            client.close()


__all__ = ["head_manifest", "list_repositories", "list_tags"]
