"""Local images and platforms: the platforms a stored index holds, and picking one of them
(``pybuild run --platform``, ``inspect`` and ``images``)."""

from __future__ import annotations

from builder.errors import BuildError
from builder.localimages import LocalImage
from builder.platforms import format_platform, normalize
from builder.store import BuildStore
from layerstore.assembly import load_image
from layerstore.errors import LayerstoreError
from layerstore.oci import Descriptor, Index, Manifest, MediaType, Platform
from layerstore.walk import load_manifest

__all__ = ["image_platforms", "select_platform"]


def _children(store: BuildStore, target: Descriptor) -> list[Descriptor]:
    """The platform image manifests of an index (none for a single manifest)."""
    if target.media_type not in MediaType.INDEXES:
        return []
    index = load_manifest(store.content, target)
    if not isinstance(index, Index):
        return []
    return [m for m in index.manifests if m.media_type in MediaType.MANIFESTS and m.platform
            and m.platform.os != "unknown"]


def image_platforms(store: BuildStore, image: LocalImage) -> list[str]:
    """The platforms ``image`` holds (``linux/amd64``), in index order; one for a single
    manifest (read from its config)."""
    children = _children(store, image.target)
    if not children:
        config = image.stored.image
        return [format_platform(Platform(os=config.os, architecture=config.architecture,
                                         variant=config.variant or None))]
    return [format_platform(normalize(c.platform)) for c in children if c.platform]


def select_platform(store: BuildStore, image: LocalImage, platform: Platform,
                    ref: str) -> LocalImage:
    """``image`` for ``platform``: the index's entry for it, or the image itself when its
    config names that platform. BuildError naming the platforms there are otherwise."""
    wanted = format_platform(platform)
    for child in _children(store, image.target):
        assert child.platform is not None
        if format_platform(normalize(child.platform)) == wanted:
            try:
                stored = load_image(store.content, child)
            except LayerstoreError as exc:
                raise BuildError(f"image {ref} for {wanted}: {exc}") from None
            manifest = load_manifest(store.content, stored.manifest)
            assert isinstance(manifest, Manifest)
            return LocalImage(image.names, image.target, stored, manifest.layers)
    have = image_platforms(store, image)
    if have == [wanted]:
        return image
    raise BuildError(f"--platform {wanted}: image {ref} has no image for it (it has "
                     f"{', '.join(have)})")
