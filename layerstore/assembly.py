"""Assembling an image from layers and a config: config blob + manifest, stored and described."""

from __future__ import annotations

import platform as _platform
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from layerstore.content.store import ContentStore
from layerstore.errors import InvalidArgument
from layerstore.oci import (
    Descriptor,
    History,
    Image,
    ImageConfig,
    Manifest,
    MediaType,
    Platform,
    RootFS,
    describe,
)
from layerstore.walk import load_manifest, read_small

if TYPE_CHECKING:
    from layerstore.layerblob import Layer


@dataclass(frozen=True)
class StoredImage:
    """An image in a content store: its manifest, config and parsed config."""

    manifest: Descriptor
    config: Descriptor
    image: Image


def timestamp(epoch: float | None = None) -> str:
    """An RFC 3339 UTC timestamp as Docker writes them (``2024-01-02T03:04:05Z``)."""
    moment = datetime.now(UTC) if epoch is None else datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment.microsecond == 0 else (
        moment.isoformat().replace("+00:00", "Z"))


def assemble_image(store: ContentStore, image: Image, layers: Sequence[Layer], *,
                   docker: bool = False, annotations: dict[str, str] | None = None
                   ) -> StoredImage:
    """Store ``image`` (its ``rootfs`` replaced by the layers' diff_ids) and a manifest for it.

    ``docker=True`` writes a Docker schema2 manifest; OCI otherwise.
    """
    from layerstore.content.copy import put_bytes

    image = replace(image, rootfs=RootFS(diff_ids=tuple(layer.diff_id for layer in layers)))
    if image.history is not None:
        made = sum(1 for h in image.history if not h.empty_layer)
        if made != len(layers):
            raise InvalidArgument(f"history names {made} layers but the image has {len(layers)}")
    config_raw = image.to_json()
    config_type = MediaType.DOCKER_CONFIG if docker else MediaType.OCI_CONFIG
    put_bytes(store, config_raw)
    config = describe(config_type, config_raw)
    manifest = Manifest(
        config=config,
        layers=tuple(layer.descriptor for layer in layers),
        media_type=MediaType.DOCKER_MANIFEST if docker else MediaType.OCI_MANIFEST,
        annotations=annotations,
    )
    raw = manifest.to_json()
    put_bytes(store, raw)
    return StoredImage(describe(manifest.media_type or MediaType.OCI_MANIFEST, raw), config, image)


def history_entry(created_by: str, *, empty_layer: bool = False, comment: str | None = None,
                  created: str | None = None) -> History:
    """A history record as BuildKit writes one."""
    return History(created=created or timestamp(), created_by=created_by, comment=comment,
                   empty_layer=True if empty_layer else None)


def import_rootfs(tarball: Path, store: ContentStore, *, compression: str = "gzip",
                  config: ImageConfig | None = None, platform: Platform | None = None,
                  created_by: str | None = None) -> StoredImage:
    """A one-layer image from a plain rootfs tarball (any of gzip/zstd/bzip2/xz/none),
    as ``docker import`` makes one."""
    from layerstore.compression import decompress_reader
    from layerstore.layerblob import store_tar_stream

    try:
        source = tarball.open("rb")
    except OSError as exc:
        raise InvalidArgument(f"cannot read rootfs tarball {tarball}: {exc.strerror}") from None
    with source:
        layer = store_tar_stream(decompress_reader(source), store, compression)
    platform = platform or Platform(architecture=host_architecture(), os="linux")
    now = timestamp()
    image = Image(
        architecture=platform.architecture, os=platform.os, variant=platform.variant,
        created=now, config=config or ImageConfig(),
        history=(history_entry(created_by or f"Imported from {tarball.name}", created=now,
                               comment="imported rootfs tarball"),),
    )
    return assemble_image(store, image, [layer])


def host_architecture() -> str:
    """This machine's architecture in GOARCH spelling (amd64, arm64, …)."""
    machine = _platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)


def load_image(store: ContentStore, manifest: Descriptor) -> StoredImage:
    """The stored image a manifest descriptor names (its config parsed)."""
    doc = load_manifest(store, manifest)
    if not isinstance(doc, Manifest):
        raise InvalidArgument(f"{manifest.digest} is an index, not an image manifest")
    config = Image.from_json(read_small(store, doc.config), f"config {doc.config.digest}")
    return StoredImage(manifest, doc.config, config)
