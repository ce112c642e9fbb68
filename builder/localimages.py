"""Local images: finding them by name or ID.

An image is found by name first (``app`` means ``app:latest``; ``docker.io/library/app`` and
``app`` are the same name) and then by ID: the config digest, in full (``sha256:…``) or as
a unique prefix of its hex (``3f2a9c``), as docker accepts it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from builder.errors import BuildError
from builder.store import BuildStore
from layerstore.assembly import StoredImage, host_architecture, load_image
from layerstore.errors import InvalidArgument, LayerstoreError, NotFound
from layerstore.images import ImageRecord, split_name
from layerstore.layout import IMAGE_NAME_ANNOTATION
from layerstore.oci import Descriptor, Index, Manifest, MediaType
from layerstore.walk import load_manifest

__all__ = ["IMAGE_NAME_ANNOTATION", "LocalImage", "all_images", "check_name", "familiar_name",
           "find_image", "find_name", "local_image", "resolve"]

_HEX_PREFIX_RE = re.compile(r"^(?:sha256:)?[0-9a-f]{1,64}$")
_DEFAULT_HOSTS = ("docker.io/", "index.docker.io/", "registry-1.docker.io/")


@dataclass(frozen=True)
class LocalImage:
    """A local image: every name that points at the same manifest (or index), what they point
    at, and the platform image it resolves to."""

    names: tuple[str, ...]
    target: Descriptor
    stored: StoredImage
    layers: tuple[Descriptor, ...]

    @property
    def id(self) -> str:
        """The image ID as docker shows it: the config digest."""
        return str(self.stored.config.digest)

    @property
    def short_id(self) -> str:
        """The first 12 hex characters of the ID."""
        return self.stored.config.digest.hex[:12]

    @property
    def size(self) -> int:
        """Bytes the image takes in the content store: its layer blobs and config."""
        return self.stored.config.size + sum(layer.size for layer in self.layers)


def familiar_name(name: str) -> str:
    """``repo:tag`` as docker shows it: ``docker.io/library/busybox`` → ``busybox:latest``."""
    for host in _DEFAULT_HOSTS:
        if name.startswith(host):
            name = name[len(host):]
            break
    else:
        return "{}:{}".format(*split_name(name))
    name = name.removeprefix("library/") if name.count("/") == 1 else name
    return "{}:{}".format(*split_name(name))


def local_image(store: BuildStore, names: Sequence[str], target: Descriptor) -> LocalImage:
    """The :class:`LocalImage` that ``names`` point at (``target``), resolved and parsed."""
    stored = resolve(store, target)
    manifest = load_manifest(store.content, stored.manifest)
    assert isinstance(manifest, Manifest)
    return LocalImage(tuple(sorted(names)), target, stored, manifest.layers)


def resolve(store: BuildStore, target: Descriptor) -> StoredImage:
    """The image a name's target describes: the manifest itself, or for an index the entry
    for this machine's platform (linux and its architecture; the first entry failing that)."""
    if target.media_type not in MediaType.INDEXES:
        return load_image(store.content, target)
    index = load_manifest(store.content, target)
    if not isinstance(index, Index) or not index.manifests:
        raise InvalidArgument(f"index {target.digest} lists no images")
    arch = host_architecture()
    local = [m for m in index.manifests if m.media_type in MediaType.MANIFESTS
             and store.content.exists(m.digest)]
    for desc in local:
        if desc.platform and desc.platform.os == "linux" and desc.platform.architecture == arch:
            return load_image(store.content, desc)
    if not local:
        raise NotFound(f"index {target.digest}: none of its images is stored locally")
    return load_image(store.content, local[0])


def all_images(store: BuildStore) -> list[LocalImage]:
    """Every named local image, one entry per distinct target, names sorted. An image whose
    manifest or config cannot be read is left out with a warning on stderr."""
    groups: dict[str, list[ImageRecord]] = {}
    for record in store.images.list():
        groups.setdefault(str(record.target.digest), []).append(record)
    images = []
    for records in groups.values():
        names = [r.name for r in records]
        try:
            images.append(local_image(store, names, records[0].target))
        except LayerstoreError as exc:
            print(f"WARNING: image {', '.join(sorted(names))} is damaged: {exc}",
                  file=sys.stderr)
    return images


def find_image(store: BuildStore, ref: str) -> LocalImage:
    """The image ``ref`` names (see the module docstring); BuildError when there is none."""
    record = find_name(store, ref)
    if record is not None:
        names = [r.name for r in store.images.list() if r.target.digest == record.target.digest]
        return local_image(store, names, record.target)
    if _HEX_PREFIX_RE.match(ref):
        hexpart = ref.removeprefix("sha256:")
        found = [img for img in all_images(store)
                 if img.stored.config.digest.hex.startswith(hexpart)]
        ids = {img.id for img in found}
        if len(ids) > 1:
            raise BuildError(f"image ID prefix {ref!r} is ambiguous: it matches "
                             f"{', '.join(sorted(i[7:19] for i in ids))}")
        if found:
            all_names = tuple(sorted(n for img in found for n in img.names))
            return LocalImage(all_names, found[0].target, found[0].stored, found[0].layers)
        if ref.startswith("sha256:"):
            raise BuildError(f"no image with ID {ref}")
    try:
        repo, tag = split_name(ref)
    except InvalidArgument:
        raise BuildError(f"no image named {ref!r} (not a valid name or image ID)") from None
    raise BuildError(f"no image named {repo}:{tag}")


def find_name(store: BuildStore, ref: str) -> ImageRecord | None:
    """The stored name ``ref`` means (exactly, or in its familiar form); None without one."""
    try:
        split_name(ref)
    except InvalidArgument:
        return None
    try:
        return store.images.get(ref)
    except NotFound:
        pass
    wanted = familiar_name(ref)
    for record in store.images.list():
        if familiar_name(record.name) == wanted:
            return record
    return None


def check_name(name: str) -> str:
    """``name`` as stored (``repo:tag``); BuildError for a malformed name."""
    try:
        return "{}:{}".format(*split_name(name))
    except InvalidArgument as exc:
        raise BuildError(str(exc)) from None
