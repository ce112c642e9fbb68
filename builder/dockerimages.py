"""What builds do with the local Docker engine (:mod:`builder.dockerengine`): take a base
image from it, and load a result into it (``--load``, ``--output type=docker`` without
``dest``)."""

from __future__ import annotations

from collections.abc import Sequence

from builder.dockerengine import DockerEngine, DockerEngineError, NotInDockerEngine
from builder.dockerstream import archive_chunks, read_stream
from builder.errors import BuildError
from builder.store import BuildStore
from layerstore.assembly import StoredImage
from layerstore.digest import Digest, chain_ids
from layerstore.docker_archive import ArchiveImage
from layerstore.errors import LayerstoreError
from layerstore.oci import Descriptor, Image, MediaType, Platform
from layerstore.walk import read_small

__all__ = ["chains_in_engine", "check_engine", "fetch_image", "load_image_into_engine"]


def _platform(os_: str, arch: str, variant: str | None) -> str:
    return f"{os_}/{arch}" + (f"/{variant}" if variant else "")


def fetch_image(store: BuildStore, name: str, platform: Platform,
                compression: str = "gzip") -> StoredImage:
    """Copy the engine's image ``name`` into ``store`` (streamed, see
    :func:`builder.dockerstream.read_stream`) and return it, unnamed. An image of another
    platform than ``platform`` is refused (:class:`NotInDockerEngine`)."""
    with DockerEngine() as engine:
        info = engine.inspect(name)
        if info.architecture and (info.os, info.architecture) != (platform.os,
                                                                   platform.architecture):
            have = _platform(info.os, info.architecture, info.variant)
            want = _platform(platform.os, platform.architecture, platform.variant)
            raise NotInDockerEngine(f"the Docker engine at {engine.address.where} holds "
                                    f"{name!r} for {have}, not for {want}")
        where = f"Docker engine at {engine.address.where}: image {name}"
        try:
            with engine.save(name) as stream:
                images = read_stream(stream, store.content, where, compression)
        except LayerstoreError as exc:
            raise DockerEngineError(str(exc)) from None
    for item in images:
        if str(item.image.config.digest) == info.id:
            return item.image
    if len(images) == 1:
        return images[0].image
    raise DockerEngineError(f"{where}: the saved archive does not hold image {info.id}")


def check_engine() -> None:
    """Fail early (:class:`~builder.dockerengine.NoDockerEngine`) when no engine answers."""
    with DockerEngine() as engine:
        engine.ping()


def chains_in_engine(engine: DockerEngine, store: BuildStore) -> frozenset[Digest]:
    """The layer stacks (chain IDs) the engine holds that pybuild can tell: those of its
    images whose ID (the config digest) names a config in pybuild's store too. Empty for an
    engine on containerd's image store."""
    if not engine.stores_layers_by_chain():
        return frozenset()
    chains: set[Digest] = set()
    for image_id in engine.image_ids():
        try:
            digest = Digest.parse(image_id)
            if not store.content.exists(digest):
                continue
            config = Image.from_json(read_small(store.content, Descriptor(
                media_type=MediaType.OCI_CONFIG, digest=digest,
                size=store.content.info(digest).size)), f"config {digest}")
        except LayerstoreError:
            continue
        chains.update(chain_ids(config.rootfs.diff_ids))
    return frozenset(chains)


def load_image_into_engine(store: BuildStore, image: StoredImage, names: Sequence[str]
                           ) -> list[str]:
    """Send ``image`` under ``names`` to the engine (``docker load``, streamed, without the
    layers it is known to hold); return the engine's report lines. A load without those
    layers that the engine refuses (it let go of one meanwhile) is sent again whole."""
    images = [ArchiveImage(image, tuple(names))]
    with DockerEngine() as engine:
        try:
            present = chains_in_engine(engine, store)
            try:
                return engine.load(archive_chunks(store.content, images, present))
            except DockerEngineError:
                if not present:
                    raise
            return engine.load(archive_chunks(store.content, images))
        except LayerstoreError as exc:
            raise BuildError(f"loading into the Docker engine at {engine.address.where}: "
                             f"{exc}") from None

