"""The OCI image model (and the Docker schema2 forms understood alongside it).

Values are frozen dataclasses; each keeps unknown JSON fields in ``extra`` so that a parsed
document re-encodes without loss. ``to_json()`` gives canonical JSON (sorted keys, compact).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from layerstore.digest import Digest
from layerstore.errors import InvalidArgument
from layerstore.jsonmodel import JSONModel, canonical_json, key


class MediaType:
    """Media type strings of the OCI image spec and Docker's schema2."""

    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
    OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
    OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
    OCI_EMPTY = "application/vnd.oci.empty.v1+json"
    OCI_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"

    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"

    MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
    INDEXES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
    CONFIGS = frozenset({OCI_CONFIG, DOCKER_CONFIG})
    LAYERS = frozenset({
        OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_LAYER_NONDIST, OCI_LAYER_NONDIST_GZIP,
        OCI_LAYER_NONDIST_ZSTD, DOCKER_LAYER_GZIP, DOCKER_LAYER_FOREIGN_GZIP, DOCKER_LAYER_ZSTD,
    })
    NONDISTRIBUTABLE = frozenset({
        OCI_LAYER_NONDIST, OCI_LAYER_NONDIST_GZIP, OCI_LAYER_NONDIST_ZSTD,
        DOCKER_LAYER_FOREIGN_GZIP,
    })


def layer_compression(media_type: str) -> str:
    """``"gzip"``, ``"zstd"`` or ``"none"`` for a layer media type."""
    if media_type.endswith("gzip"):
        return "gzip"
    if media_type.endswith("zstd"):
        return "zstd"
    if media_type in MediaType.LAYERS:
        return "none"
    raise InvalidArgument(f"not a layer media type: {media_type!r}")


def layer_media_type(compression: str, docker: bool = False) -> str:
    """The layer media type for a compression (``gzip``/``zstd``/``none``)."""
    if docker:
        if compression == "gzip":
            return MediaType.DOCKER_LAYER_GZIP
        if compression == "zstd":
            return MediaType.DOCKER_LAYER_ZSTD
        raise InvalidArgument("Docker schema2 has no uncompressed layer media type")
    table = {"gzip": MediaType.OCI_LAYER_GZIP, "zstd": MediaType.OCI_LAYER_ZSTD,
             "none": MediaType.OCI_LAYER}
    try:
        return table[compression]
    except KeyError:
        raise InvalidArgument(f"unknown compression {compression!r}") from None


@dataclass(frozen=True)
class Platform(JSONModel):
    """The platform an image runs on."""

    architecture: str = key("architecture", required=True)
    os: str = key("os", required=True)
    os_version: str | None = key("os.version")
    os_features: tuple[str, ...] = key("os.features", default=())
    variant: str | None = key("variant")
    features: tuple[str, ...] = key("features", default=())
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base


@dataclass(frozen=True)
class Descriptor(JSONModel):
    """A typed, sized, digest-addressed reference to content."""

    media_type: str = key("mediaType", required=True)
    digest: Digest = key("digest", required=True)
    size: int = key("size", required=True)
    urls: tuple[str, ...] = key("urls", default=())
    annotations: dict[str, str] | None = key("annotations")
    data: str | None = key("data")
    artifact_type: str | None = key("artifactType")
    platform: Platform | None = key("platform")
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.size < 0:
            raise InvalidArgument(f"descriptor {self.digest} has negative size {self.size}")


def _check_header(schema_version: int, media_type: str | None, allowed: Collection[str],
                  what: str) -> None:
    """The checks a manifest and an index share: schemaVersion 2 and a mediaType (when one
    is given) of their kind."""
    if schema_version != 2:
        raise InvalidArgument(f"schemaVersion must be 2, got {schema_version}")
    if media_type is not None and media_type not in allowed:
        raise InvalidArgument(f"mediaType {media_type!r} is not an {what}")


@dataclass(frozen=True)
class Manifest(JSONModel):
    """An OCI image manifest or a Docker schema2 manifest."""

    config: Descriptor = key("config", required=True)
    layers: tuple[Descriptor, ...] = key("layers", always=True, default=())
    media_type: str | None = key("mediaType", default=MediaType.OCI_MANIFEST)
    schema_version: int = key("schemaVersion", always=True, default=2)
    subject: Descriptor | None = key("subject")
    artifact_type: str | None = key("artifactType")
    annotations: dict[str, str] | None = key("annotations")
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        _check_header(self.schema_version, self.media_type, MediaType.MANIFESTS, "image manifest")


@dataclass(frozen=True)
class Index(JSONModel):
    """An OCI image index or a Docker manifest list."""

    manifests: tuple[Descriptor, ...] = key("manifests", always=True, default=())
    media_type: str | None = key("mediaType", default=MediaType.OCI_INDEX)
    schema_version: int = key("schemaVersion", always=True, default=2)
    subject: Descriptor | None = key("subject")
    artifact_type: str | None = key("artifactType")
    annotations: dict[str, str] | None = key("annotations")
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        _check_header(self.schema_version, self.media_type, MediaType.INDEXES, "image index")


@dataclass(frozen=True)
class Healthcheck(JSONModel):
    """HEALTHCHECK settings; durations are nanoseconds as Docker stores them."""

    test: tuple[str, ...] = key("Test", default=())
    interval: int | None = key("Interval")
    timeout: int | None = key("Timeout")
    start_period: int | None = key("StartPeriod")
    start_interval: int | None = key("StartInterval")
    retries: int | None = key("Retries")
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ImageConfig(JSONModel):
    """The execution parameters of an image (the ``config`` object of the config blob)."""

    user: str | None = key("User")
    exposed_ports: dict[str, Any] | None = key("ExposedPorts")
    env: tuple[str, ...] | None = key("Env")
    entrypoint: tuple[str, ...] | None = key("Entrypoint")
    cmd: tuple[str, ...] | None = key("Cmd")
    volumes: dict[str, Any] | None = key("Volumes")
    working_dir: str | None = key("WorkingDir")
    labels: dict[str, str] | None = key("Labels")
    stop_signal: str | None = key("StopSignal")
    args_escaped: bool | None = key("ArgsEscaped")
    healthcheck: Healthcheck | None = key("Healthcheck")
    on_build: tuple[str, ...] | None = key("OnBuild")
    shell: tuple[str, ...] | None = key("Shell")
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class History(JSONModel):
    """One history entry; ``empty_layer`` marks an instruction that made no layer."""

    created: str | None = key("created")
    created_by: str | None = key("created_by")
    author: str | None = key("author")
    comment: str | None = key("comment")
    empty_layer: bool | None = key("empty_layer")
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class RootFS(JSONModel):
    """The ordered uncompressed layer digests of an image."""

    type: str = key("type", always=True, default="layers")
    diff_ids: tuple[Digest, ...] = key("diff_ids", always=True, default=())
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.type != "layers":
            raise InvalidArgument(f"rootfs.type must be 'layers', got {self.type!r}")


@dataclass(frozen=True)
class Image(JSONModel):
    """An image configuration blob (OCI ``config`` / Docker container image JSON)."""

    architecture: str = key("architecture", always=True, default="amd64")
    os: str = key("os", always=True, default="linux")
    rootfs: RootFS = key("rootfs", always=True, default=None)
    created: str | None = key("created")
    author: str | None = key("author")
    os_version: str | None = key("os.version")
    os_features: tuple[str, ...] | None = key("os.features")
    variant: str | None = key("variant")
    config: ImageConfig | None = key("config")
    history: tuple[History, ...] | None = key("history")
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.rootfs is None:
            object.__setattr__(self, "rootfs", RootFS())

    @property
    def platform(self) -> Platform:
        """The platform this config declares."""
        return Platform(architecture=self.architecture, os=self.os,
                        os_version=self.os_version, variant=self.variant)


def describe(media_type: str, raw: bytes, **kwargs: Any) -> Descriptor:
    """A sha256 descriptor of in-memory bytes (a manifest or config)."""
    return Descriptor(media_type=media_type, digest=Digest.from_bytes(raw), size=len(raw), **kwargs)


def parse_manifest_or_index(raw: bytes, where: str = "") -> Manifest | Index:
    """Parse a manifest or index, telling which by ``mediaType`` (or by shape without it)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{where or 'manifest'}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"{where or 'manifest'}: expected a JSON object")
    media_type = data.get("mediaType")
    if media_type in MediaType.INDEXES or (media_type is None and "manifests" in data):
        return Index.from_dict(data, where or "index")
    if media_type in MediaType.MANIFESTS or (media_type is None and "config" in data):
        return Manifest.from_dict(data, where or "manifest")
    raise InvalidArgument(f"{where or 'manifest'}: unsupported mediaType {media_type!r}")


__all__ = [
    "Descriptor", "Healthcheck", "History", "Image", "ImageConfig", "Index", "Manifest",
    "MediaType", "Platform", "RootFS", "canonical_json", "describe", "layer_compression",
    "layer_media_type", "parse_manifest_or_index",
]
