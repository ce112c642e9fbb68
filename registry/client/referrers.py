"""Referrers on registries without the referrers API: the OCI distribution spec's fallback.

A manifest with a ``subject`` is listed by ``GET /v2/<name>/referrers/<digest>`` on a
registry that implements that API; such a registry answers the manifest's PUT with an
``OCI-Subject`` header. Where that header is missing, the client keeps the list itself: an
image index tagged ``<alg>-<hex>`` of the subject's digest, holding one descriptor per
referrer (with its ``artifactType`` and annotations). Two clients updating the same list at
once may lose one entry, as the spec accepts.
"""

from __future__ import annotations

from layerstore.digest import Digest
from layerstore.errors import InvalidArgument
from layerstore.oci import Descriptor, Index, Manifest, MediaType
from registry.client.auth import repository_scope
from registry.client.errors import NotFound, ProtocolError
from registry.client.manifests import fetch_manifest, put_manifest
from registry.client.transport import Transport

__all__ = ["fallback_tag", "list_in_fallback", "list_referrers", "referrer_descriptor"]


def fallback_tag(subject: Digest) -> str:
    """The tag of the referrers list of ``subject``: ``sha256-<hex>`` (at most 128
    characters)."""
    return f"{subject.algorithm}-{subject.hex}"[:128]


def referrer_descriptor(desc: Descriptor, document: Manifest | Index) -> Descriptor:
    """How a referrers list names the manifest ``desc`` (``document`` parsed)."""
    artifact_type = document.artifact_type
    if artifact_type is None and isinstance(document, Manifest):
        artifact_type = document.config.media_type
    return Descriptor(media_type=desc.media_type, digest=desc.digest, size=desc.size,
                      artifact_type=artifact_type, annotations=document.annotations)


def list_in_fallback(transport: Transport, repository: str, subject: Digest,
                     referrer: Descriptor) -> None:
    """Add ``referrer`` to the fallback referrers list of ``subject`` in ``repository``
    (nothing to do when it is listed already)."""
    tag = fallback_tag(subject)
    what = f"{repository}:{tag} (referrers of {subject})"
    manifests: tuple[Descriptor, ...] = ()
    try:
        fetched = fetch_manifest(transport, repository, tag, what=what)
        if isinstance(fetched.document, Index):
            manifests = fetched.document.manifests
    except NotFound:
        pass
    if any(m.digest == referrer.digest for m in manifests):
        return
    index = Index(manifests=(*manifests, referrer))
    put_manifest(transport, repository, tag, MediaType.OCI_INDEX, index.to_json(), what=what)


def list_referrers(transport: Transport, repository: str, subject: Digest,
                   artifact_type: str | None = None) -> list[Descriptor]:
    """The manifests in ``repository`` whose ``subject`` is ``subject`` (of
    ``artifact_type`` only, when given): from the referrers API, or from the fallback tag
    where the registry has no such API."""
    what = f"{repository} referrers of {subject}"
    try:
        response = transport.request(
            "GET", f"/v2/{repository}/referrers/{subject}", what=what,
            scopes=(repository_scope(repository, "pull"),),
            params={"artifactType": artifact_type} if artifact_type else None,
            headers={"Accept": MediaType.OCI_INDEX})
        try:
            manifests = Index.from_json(response.content, what).manifests
        except InvalidArgument as exc:
            raise ProtocolError(f"{what}: {exc}", registry=transport.registry) from None
    except NotFound:
        try:
            fetched = fetch_manifest(transport, repository, fallback_tag(subject), what=what)
        except NotFound:
            return []
        manifests = fetched.document.manifests if isinstance(fetched.document, Index) else ()
    return [m for m in manifests if artifact_type is None or m.artifact_type == artifact_type]
