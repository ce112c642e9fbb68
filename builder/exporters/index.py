"""The OCI image index of a multi-platform build.

BuildKit's layout: an ``application/vnd.oci.image.index.v1+json`` document (schemaVersion 2)
listing one image manifest per platform, in the order the platforms were asked for, each
descriptor carrying the platform (``architecture``, ``os`` and ``variant`` when there is one)
read from the image's config. ``extra`` descriptors (attestation manifests, say) follow the
images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from layerstore.assembly import StoredImage
from layerstore.content.store import ContentStore
from layerstore.oci import Descriptor, Index, MediaType, Platform, describe

__all__ = ["assemble_index", "platform_descriptor"]


def platform_descriptor(image: StoredImage) -> Descriptor:
    """The manifest descriptor of ``image`` with the platform its config names."""
    config = image.image
    platform = Platform(architecture=config.architecture, os=config.os,
                        os_version=config.os_version, variant=config.variant or None)
    m = image.manifest
    return Descriptor(media_type=m.media_type, digest=m.digest, size=m.size,
                      annotations=m.annotations, platform=platform)


def assemble_index(store: ContentStore, images: Sequence[StoredImage],
                   extra: Sequence[Descriptor] = (),
                   annotations: Mapping[str, str] | None = None) -> Descriptor:
    """Store the index of ``images`` (then ``extra``) in ``store``; return its descriptor."""
    from layerstore.content.copy import put_bytes

    index = Index(manifests=(*(platform_descriptor(i) for i in images), *extra),
                  media_type=MediaType.OCI_INDEX,
                  annotations=dict(annotations) if annotations else None)
    raw = index.to_json()
    put_bytes(store, raw)
    return describe(MediaType.OCI_INDEX, raw)
