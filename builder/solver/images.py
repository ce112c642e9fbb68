"""Finding the images a build starts from (FROM, COPY --from, RUN --mount from=)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

from builder.errors import ImageNotFound
from builder.store import BuildStore
from layerstore.assembly import StoredImage, load_image
from layerstore.digest import Digest
from layerstore.errors import InvalidArgument, LayerstoreError, NotFound
from layerstore.oci import Descriptor, Image, Index, MediaType, Platform
from layerstore.walk import load_manifest

__all__ = ["ImageNotFound", "ImageResolver", "LocalImages", "ResolvedImages", "layout_image",
           "pick_platform"]


class ImageResolver(Protocol):
    """Turns an image reference into a stored image for a platform."""

    def resolve(self, ref: str, platform: Platform) -> StoredImage:
        """The image ``ref`` names, for ``platform`` when it is a multi-platform index;
        :class:`ImageNotFound` when there is none."""
        ...


class ResolvedImages:
    """Each ``(ref, platform)`` resolved once per build (thread-safe): the compiler reads a
    base image's config through :meth:`image` and the solver unpacks the same image."""

    def __init__(self, resolver: ImageResolver) -> None:
        self.resolver = resolver
        self._lock = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._found: dict[tuple[str, str], StoredImage] = {}

    def resolve(self, ref: str, platform: Platform) -> StoredImage:
        """See :class:`ImageResolver`."""
        key = (ref, f"{platform.os}/{platform.architecture}/{platform.variant or ''}")
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._found:
                self._found[key] = self.resolver.resolve(ref, platform)
            return self._found[key]

    def image(self, ref: str, platform: Platform) -> Image:
        """The config of image ``ref`` (the compiler's
        :class:`~builder.graph.compile.BaseImages`)."""
        return self.resolve(ref, platform).image


def pick_platform(store: BuildStore, target: Descriptor, platform: Platform,
                  ref: str) -> Descriptor:
    """The manifest for ``platform`` when ``target`` is an index; ``target`` otherwise."""
    if target.media_type not in MediaType.INDEXES:
        return target
    doc = load_manifest(store.content, target)
    assert isinstance(doc, Index)
    for child in doc.manifests:
        p = child.platform
        if p is None or child.media_type not in MediaType.MANIFESTS:
            continue
        if p.os == platform.os and p.architecture == platform.architecture and (
                platform.variant is None or p.variant in (None, platform.variant)):
            return child
    raise ImageNotFound(f"image {ref!r} has no manifest for "
                        f"{platform.os}/{platform.architecture}")


class LocalImages:
    """Resolves references against the local image store only.

    ``name[:tag]`` is looked up by name (``:latest`` implied); ``name@sha256:…`` and a bare
    ``sha256:…`` must be a manifest or index in the content store.
    """

    def __init__(self, store: BuildStore) -> None:
        self.store = store

    def resolve(self, ref: str, platform: Platform) -> StoredImage:
        """See :class:`ImageResolver`."""
        target = self._target(ref)
        manifest = pick_platform(self.store, target, platform, ref)
        try:
            return load_image(self.store.content, manifest)
        except LayerstoreError as exc:
            raise ImageNotFound(f"image {ref!r}: {exc}") from None

    def _target(self, ref: str) -> Descriptor:
        name, at, digest_text = ref.partition("@")
        if not at and ref.startswith("sha256:"):
            name, digest_text = "", ref
        if digest_text:
            try:
                digest = Digest.parse(digest_text)
                info = self.store.content.info(digest)
            except (InvalidArgument, NotFound):
                raise ImageNotFound(f"image {ref!r} not found in the local store") from None
            with self.store.content.reader(digest) as f:
                head = f.read(4 << 20)
            media_type = _sniff_media_type(head)
            return Descriptor(media_type=media_type, digest=digest, size=info.size)
        try:
            return self.store.images.get(name).target
        except InvalidArgument as exc:
            raise ImageNotFound(str(exc)) from None
        except NotFound:
            raise ImageNotFound(
                f"image {ref!r} not found in the local store (load it with `pybuild load` "
                "or build it first)") from None


def _sniff_media_type(raw: bytes) -> str:
    import json

    try:
        doc = json.loads(raw)
    except ValueError:
        raise ImageNotFound("the digest does not name a manifest") from None
    media_type = doc.get("mediaType") if isinstance(doc, dict) else None
    if isinstance(media_type, str) and media_type in MediaType.MANIFESTS | MediaType.INDEXES:
        return media_type
    if isinstance(doc, dict) and "manifests" in doc:
        return MediaType.OCI_INDEX
    return MediaType.OCI_MANIFEST


def layout_image(store: BuildStore, ref: str, platform: Platform) -> StoredImage:
    """The image an ``oci-layout://DIR[:TAG][@DIGEST]`` reference names (the layout's only
    image when it names neither), its blobs verified into the store, for ``platform``
    when it is an index."""
    import tempfile

    from builder.buildcontexts import split_oci_layout
    from layerstore.content.copy import copy_blob
    from layerstore.content.local import LocalStore
    from layerstore.layout import entries
    from layerstore.walk import reachable

    directory, tag, digest = split_oci_layout(ref)
    try:
        listed = entries(directory)
        if digest is not None:
            chosen = [e for e in listed if str(e.descriptor.digest) == digest]
        elif tag is not None:
            chosen = [e for e in listed if e.ref_name == tag]
        else:
            chosen = listed
            if len(listed) > 1:
                raise ImageNotFound(f"{ref}: the layout holds {len(listed)} images; name one "
                                    "with :TAG or @DIGEST")
        if not chosen:
            raise ImageNotFound(f"{ref}: the layout has no such image")
        desc = chosen[0].descriptor
        with tempfile.TemporaryDirectory(prefix="layout-", dir=store.tmp) as tmp:
            source = LocalStore(directory, ingest_root=Path(tmp))
            for blob in reachable(source, desc):
                if not store.content.exists(blob.digest):
                    copy_blob(source, store.content, blob)
        plain = Descriptor(media_type=desc.media_type, digest=desc.digest, size=desc.size)
        return load_image(store.content, pick_platform(store, plain, platform, ref))
    except LayerstoreError as exc:
        raise ImageNotFound(f"{ref}: {exc}") from None
