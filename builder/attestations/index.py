"""Attestation manifests and the index holding images and attestations, as BuildKit stores
them (``docs/attestations/attestation-storage.md`` of BuildKit, OCI artifact form).

An attestation manifest is an OCI image manifest with ``artifactType``
``application/vnd.docker.attestation.manifest.v1+json``, the empty config, one
``application/vnd.in-toto+json`` layer per statement (annotated with its predicate type)
and a ``subject`` naming the image manifest it is about, so that a registry's referrers API
lists it. The index lists every image manifest first, then one attestation manifest per
image, each with platform ``unknown/unknown`` and the annotations
``vnd.docker.reference.type: attestation-manifest`` and ``vnd.docker.reference.digest:
<image manifest digest>``.

:func:`image_index` is a plain function of the image manifests and the attestation
manifests, so that a multi-platform build can hand it every platform's image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from builder.attestations.intoto import INTOTO_MEDIA_TYPE, PREDICATE_ANNOTATION, Statement
from layerstore.content.copy import put_bytes
from layerstore.content.store import ContentStore
from layerstore.errors import InvalidArgument
from layerstore.oci import Descriptor, Index, Manifest, MediaType, Platform, describe

__all__ = ["ATTESTATION_ARTIFACT_TYPE", "REFERENCE_DIGEST", "REFERENCE_TYPE",
           "UNKNOWN_PLATFORM", "attestation_entries", "image_index", "is_attestation",
           "store_attestation_manifest", "store_index"]

ATTESTATION_ARTIFACT_TYPE = "application/vnd.docker.attestation.manifest.v1+json"
REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"
ATTESTATION_MANIFEST = "attestation-manifest"
UNKNOWN_PLATFORM = Platform(architecture="unknown", os="unknown")
EMPTY_JSON = b"{}"


def is_attestation(entry: Descriptor) -> bool:
    """Whether an index entry is an attestation manifest."""
    return (entry.annotations or {}).get(REFERENCE_TYPE) == ATTESTATION_MANIFEST


def attestation_entries(index: Index, image: Descriptor) -> list[Descriptor]:
    """The entries of ``index`` that are attestation manifests about ``image``."""
    return [m for m in index.manifests if is_attestation(m) and
            (m.annotations or {}).get(REFERENCE_DIGEST) == str(image.digest)]


def _bare(desc: Descriptor) -> Descriptor:
    """``desc`` as a subject: media type, digest and size only."""
    return Descriptor(media_type=desc.media_type, digest=desc.digest, size=desc.size)


def store_attestation_manifest(store: ContentStore, image: Descriptor,
                               statements: Sequence[Statement]) -> Descriptor:
    """Store the statements and an attestation manifest about ``image``; return its index
    entry (platform ``unknown/unknown``, the reference annotations)."""
    if not statements:
        raise InvalidArgument("an attestation manifest needs at least one statement")
    put_bytes(store, EMPTY_JSON)
    config = describe(MediaType.OCI_EMPTY, EMPTY_JSON, data="e30=")
    layers = []
    for statement in statements:
        raw = statement.to_json()
        put_bytes(store, raw)
        layers.append(describe(INTOTO_MEDIA_TYPE, raw, annotations={
            PREDICATE_ANNOTATION: statement.predicate_type}))
    manifest = Manifest(config=config, layers=tuple(layers), subject=_bare(image),
                        artifact_type=ATTESTATION_ARTIFACT_TYPE)
    raw = manifest.to_json()
    put_bytes(store, raw)
    return describe(MediaType.OCI_MANIFEST, raw, platform=UNKNOWN_PLATFORM, annotations={
        REFERENCE_DIGEST: str(image.digest), REFERENCE_TYPE: ATTESTATION_MANIFEST})


def image_index(images: Sequence[Descriptor], attestations: Sequence[Descriptor] = (),
                annotations: Mapping[str, str] | None = None) -> Index:
    """The OCI index of ``images`` (manifest descriptors carrying their platforms) followed
    by ``attestations`` (as :func:`store_attestation_manifest` returns them), each of which
    must be about one of the images."""
    digests = {str(d.digest) for d in images}
    for image in images:
        if image.media_type not in MediaType.MANIFESTS:
            raise InvalidArgument(f"index entry {image.digest}: {image.media_type} is not an "
                                  "image manifest")
        if image.platform is None:
            raise InvalidArgument(f"index entry {image.digest} has no platform")
    for entry in attestations:
        about = (entry.annotations or {}).get(REFERENCE_DIGEST)
        if not is_attestation(entry) or about not in digests:
            raise InvalidArgument(f"attestation manifest {entry.digest} is not about any "
                                  "image of the index")
    return Index(manifests=(*images, *attestations),
                 annotations=dict(annotations) if annotations else None)


def store_index(store: ContentStore, index: Index) -> Descriptor:
    """Store ``index``; return its descriptor."""
    raw = index.to_json()
    put_bytes(store, raw)
    return describe(MediaType.OCI_INDEX, raw)
