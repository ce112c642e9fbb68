"""Images from containers and from filesystem tars: ``commit`` and ``import``.

``commit`` stores the container's changes (its snapshot's upper directory, deletions as
whiteouts) as one new layer on top of its image's layers, with the container's config (as
``pybuild run`` set it up: environment, command, working directory, user) and the ``-c``
changes applied, and one history entry whose ``created_by`` is the container's command, as
docker writes it. ``import`` stores a filesystem tar (gzip, zstd, bzip2, xz or plain) as the
one layer of an image whose config holds only what the changes set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import BinaryIO, cast

from builder.changes import apply_changes
from builder.containerstore import Container
from builder.errors import BuildError
from builder.store import BuildStore
from layerstore.assembly import StoredImage, assemble_image, host_architecture, timestamp
from layerstore.diff import write_upper
from layerstore.errors import InvalidArgument, LayerstoreError
from layerstore.layerblob import Layer
from layerstore.oci import History, Image, ImageConfig, Manifest
from layerstore.walk import load_manifest

__all__ = ["commit_container", "import_tar"]


def _base_layers(store: BuildStore, container: Container) -> tuple[Image, list[Layer]]:
    """The image the container was made from and its layers."""
    from layerstore.assembly import load_image

    try:
        base = load_image(store.content, container.manifest)
        manifest = load_manifest(store.content, container.manifest)
    except LayerstoreError as exc:
        raise BuildError(f"container {container.name}: its image {container.image} "
                         f"({container.manifest.digest}) cannot be read: {exc}") from None
    assert isinstance(manifest, Manifest)
    diff_ids = base.image.rootfs.diff_ids
    layers = [Layer(desc, diff_id, 0)
              for desc, diff_id in zip(manifest.layers, diff_ids, strict=True)]
    return base.image, layers


def commit_container(store: BuildStore, container: Container, *,
                     changes: Sequence[str] = (), message: str | None = None,
                     author: str | None = None) -> StoredImage:
    """Store a new image made of the container's image and its changes (see the module
    docstring)."""
    config = apply_changes(container.config, changes)
    base, layers = _base_layers(store, container)
    try:
        layer = write_upper(store.snapshots.upperdir(container.snapshot), store.content)
    except LayerstoreError as exc:
        raise BuildError(f"cannot commit container {container.name}: {exc}") from None
    now = timestamp()
    entry = History(created=now, created_by=" ".join(container.command) or None,
                    author=author or None, comment=message or None)
    image = replace(base, created=now, author=author or None, config=config,
                    history=(*(base.history or ()), entry))
    return assemble_image(store.content, image, [*layers, layer])


class _Tee:
    """A reader that hands every byte it reads to ``write`` as well."""

    def __init__(self, source: BinaryIO, write: Callable[[bytes], object]) -> None:
        self.source = source
        self.write = write

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n)
        if data:
            self.write(data)
        return data


def _store_checked_tar(stream: BinaryIO, store: BuildStore) -> Layer:
    """Store ``stream`` as a layer blob while reading it as a tar, so that what is not a
    well-formed tar is refused (nothing is stored) rather than made into a layer."""
    from layerstore.archive.reader import TarReader
    from layerstore.layerblob import LayerBlobWriter

    with LayerBlobWriter(store.content, "gzip") as sink:
        reader = TarReader(cast(BinaryIO, _Tee(stream, sink.write)))
        count = sum(1 for _ in reader)
        reader.finish()
        if count == 0:
            raise InvalidArgument("the tar holds no entries")
        return sink.finish()


def import_tar(store: BuildStore, stream: BinaryIO, *, changes: Sequence[str] = (),
               message: str | None = None, source: str = "-") -> StoredImage:
    """Store the filesystem tar read from ``stream`` as a one-layer image."""
    from layerstore.compression import decompress_reader

    config = apply_changes(ImageConfig(), changes)
    try:
        layer = _store_checked_tar(decompress_reader(stream), store)
    except LayerstoreError as exc:
        raise BuildError(f"cannot import {source}: {exc}") from None
    except OSError as exc:
        raise BuildError(f"cannot import {source}: {exc.strerror or exc}") from None
    now = timestamp()
    image = Image(architecture=host_architecture(), os="linux", created=now, config=config,
                  history=(History(created=now,
                                   comment=message or f"Imported from {source}"),))
    return assemble_image(store.content, image, [layer])
