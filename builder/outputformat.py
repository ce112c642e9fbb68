"""How an ``--output`` that writes layers lays them out: compression and media types.

The attributes are buildx's: ``compression=gzip|zstd|uncompressed``,
``compression-level=N``, ``force-compression=true|false`` and ``oci-mediatypes=true|false``,
accepted by the outputs that write an image (``image``/``registry``, ``oci``, ``docker``);
any other attribute is an error naming it. The compression is passed down to the build, so
the layers it makes are written that way; layers it reuses (from the base image or the
build cache) keep theirs unless ``force-compression=true``, as in BuildKit.
:func:`convert_image` rewrites a stored image's layers and manifest to a format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from builder.errors import BuildError
from layerstore.assembly import StoredImage
from layerstore.content.store import ContentStore
from layerstore.digest import Digest
from layerstore.oci import (
    Descriptor,
    Manifest,
    MediaType,
    describe,
    layer_compression,
    layer_media_type,
)
from layerstore.walk import load_manifest

if TYPE_CHECKING:
    from layerstore.compression import Compression

#: Attributes every output type takes (handled by the output parser itself).
COMMON_ATTRIBUTES = ("type", "dest", "name", "push")
#: Attributes of the outputs that write layers.
LAYER_ATTRIBUTES = ("compression", "compression-level", "force-compression", "oci-mediatypes")
LAYER_OUTPUTS = ("image", "registry", "oci", "docker")
_COMPRESSIONS: dict[str, Compression] = {"gzip": "gzip", "zstd": "zstd", "uncompressed": "none"}
_LEVELS = {"gzip": range(0, 10), "zstd": range(0, 23)}


@dataclass(frozen=True)
class LayerFormat:
    """The layer format an output asks for; ``None`` fields leave the built image's choice.

    ``compression`` is in layerstore's spelling (``gzip``, ``zstd``, ``none``); ``level``
    is buildx's compression level; ``oci_mediatypes`` False asks for a Docker schema2
    manifest and media types.
    """

    compression: Compression | None = None
    level: int | None = None
    force: bool = False
    oci_mediatypes: bool | None = None

    @property
    def is_default(self) -> bool:
        """Whether the output takes the image as it was built."""
        return self == LayerFormat()


def check_attributes(kind: str, attrs: Mapping[str, str], where: str) -> None:
    """Refuse an attribute ``type=kind`` does not take (``where`` names the flag value)."""
    allowed = LAYER_ATTRIBUTES if kind in LAYER_OUTPUTS else ()
    for name in attrs:
        if name not in allowed:
            known = ", ".join((*COMMON_ATTRIBUTES, *allowed))
            raise BuildError(f"{where}: unknown attribute {name!r} for type={kind} "
                             f"(known: {known})")


def _bool(attrs: Mapping[str, str], name: str, where: str) -> bool | None:
    value = attrs.get(name)
    if value is None:
        return None
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise BuildError(f"{where}: {name}={value!r} must be true or false")


def parse_layer_format(attrs: Mapping[str, str], where: str) -> LayerFormat:
    """The :class:`LayerFormat` of an output's layer attributes (already known to be
    allowed); a bad value is a :class:`BuildError` naming the attribute."""
    compression: Compression | None = None
    text = attrs.get("compression")
    if text is not None:
        if text.lower() not in _COMPRESSIONS:
            raise BuildError(f"{where}: compression={text!r} is not one of "
                             f"{', '.join(_COMPRESSIONS)}")
        compression = _COMPRESSIONS[text.lower()]
    level: int | None = None
    text = attrs.get("compression-level")
    if text is not None:
        try:
            level = int(text)
        except ValueError:
            raise BuildError(f"{where}: compression-level={text!r} is not a whole number"
                             ) from None
        name = compression or "gzip"
        if name in _LEVELS and level not in _LEVELS[name]:
            levels = _LEVELS[name]
            raise BuildError(f"{where}: compression-level={level} is out of range for {name} "
                             f"({levels.start}-{levels.stop - 1})")
    oci = _bool(attrs, "oci-mediatypes", where)
    if oci is False and compression in ("zstd", "none"):
        spelled = attrs["compression"]
        raise BuildError(f"{where}: compression={spelled} needs oci-mediatypes=true (Docker "
                         "media types have only gzip layers)")
    return LayerFormat(compression, level, bool(_bool(attrs, "force-compression", where)), oci)


def build_compression(formats: list[LayerFormat], default: str) -> tuple[str, int | None]:
    """The compression and level the build writes its layers with: the first output's that
    names one, else ``default`` (``--compression``)."""
    for fmt in formats:
        if fmt.compression is not None or fmt.level is not None:
            return fmt.compression or default, fmt.level
    return default, None


def gzip_level(level: int) -> int:
    """ISA-L's gzip level (0-3) for a buildx gzip level (0-9)."""
    return 0 if level == 0 else 1 if level <= 2 else 2 if level <= 5 else 3


def codec_level(compression: str, level: int | None) -> int | None:
    """The level to hand the compressor for ``compression`` (None: its default)."""
    if level is None or compression == "none":
        return None
    return gzip_level(level) if compression == "gzip" else level


def convert_image(store: ContentStore, image: StoredImage, fmt: LayerFormat,
                  built_with: str) -> StoredImage:
    """``image`` with its layers and manifest in format ``fmt`` (the image itself when
    nothing changes); the config, and so the image ID, stays the same.

    A layer is recompressed when its compression differs from the one asked for and either
    ``force-compression`` is set or the build wrote its layers some other way
    (``built_with``), and for Docker media types whenever it is not gzip; the uncompressed
    tar must still hash to the layer's diff_id.
    """
    if fmt.is_default:
        return image
    manifest = load_manifest(store, image.manifest)
    if not isinstance(manifest, Manifest):
        raise BuildError(f"{image.manifest.digest} is an index, not an image manifest")
    docker = (manifest.media_type == MediaType.DOCKER_MANIFEST if fmt.oci_mediatypes is None
              else not fmt.oci_mediatypes)
    layers = tuple(_layer(store, desc, diff_id, fmt, docker, built_with)
                   for desc, diff_id in zip(manifest.layers, image.image.rootfs.diff_ids,
                                            strict=True))
    config = replace(image.config,
                     media_type=MediaType.DOCKER_CONFIG if docker else MediaType.OCI_CONFIG)
    converted = replace(manifest, config=config, layers=layers,
                        media_type=MediaType.DOCKER_MANIFEST if docker else MediaType.OCI_MANIFEST)
    if converted == manifest:
        return image
    from layerstore.content.copy import put_bytes

    raw = converted.to_json()
    put_bytes(store, raw)
    return StoredImage(describe(converted.media_type or MediaType.OCI_MANIFEST, raw), config,
                       image.image)


def _layer(store: ContentStore, desc: Descriptor, diff_id: Digest, fmt: LayerFormat,
           docker: bool, built_with: str) -> Descriptor:
    if desc.media_type in MediaType.NONDISTRIBUTABLE:
        return desc
    current = layer_compression(desc.media_type)
    target = fmt.compression or current
    if docker and current != "gzip":  # Docker media types have gzip layers only
        target, force = "gzip", True
    else:
        force = fmt.force or target != built_with
    if target != current and force:
        from layerstore.compression import decompress_reader
        from layerstore.layerblob import store_tar_stream

        with store.reader(desc.digest) as blob:
            layer = store_tar_stream(decompress_reader(blob), store, target,
                                     docker_media_type=docker,
                                     level=codec_level(target, fmt.level),
                                     expected_diff_id=diff_id)
        return replace(layer.descriptor, annotations=desc.annotations)
    return replace(desc, media_type=layer_media_type(current, docker))
