"""Attaching attestations to a built image: the SBOM of its filesystem, the provenance of its
build, an attestation manifest about it and the index that holds both."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from builder.attestations.index import image_index, store_attestation_manifest, store_index
from builder.attestations.intoto import Statement, image_purl
from builder.attestations.provenance import (
    PROVENANCE_V1,
    BaseImage,
    BuildFacts,
    default_builder_id,
    git_source,
    provenance_predicate,
    unique_bases,
)
from builder.attestations.request import AttestationError, AttestRequest
from layerstore.assembly import timestamp
from layerstore.digest import Digest
from layerstore.oci import Descriptor, Platform

if TYPE_CHECKING:
    from builder.options import BuildOptions
    from builder.store import BuildStore
    from layerstore.assembly import StoredImage

__all__ = ["BuildRecord", "PlatformImage", "attest_image", "attest_images", "build_facts",
           "resolved_digest", "sbom_statement"]


@dataclass(frozen=True)
class BuildRecord:
    """What the build itself knows that the attestations state: when it ran, on what, the
    base images it resolved, and ``SOURCE_DATE_EPOCH`` (which dates the SBOM, making it
    reproducible; the provenance keeps the real times)."""

    started: str
    finished: str
    builder_platform: Platform
    bases: tuple[BaseImage, ...] = ()
    epoch: int | None = None


def resolved_digest(store: BuildStore, ref: str, image: StoredImage) -> Digest:
    """The digest ``ref`` resolved to, as BuildKit records a base image: the digest the
    reference pins, else the index the local name points at when it holds ``image``, else
    ``image``'s manifest."""
    from builder.localimages import find_name
    from layerstore.errors import LayerstoreError
    from layerstore.oci import Index, MediaType
    from layerstore.walk import load_manifest

    _, at, pinned = ref.partition("@")
    if at:
        try:
            return Digest.parse(pinned)
        except LayerstoreError:
            return image.manifest.digest
    record = find_name(store, ref)
    if record is not None and record.target.media_type in MediaType.INDEXES:
        try:
            index = load_manifest(store.content, record.target)
        except LayerstoreError:
            return image.manifest.digest
        if isinstance(index, Index) and any(m.digest == image.manifest.digest
                                            for m in index.manifests):
            return record.target.digest
    return image.manifest.digest


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pybuild")
    except PackageNotFoundError:
        return "unknown"


def _dockerfile_digest(options: BuildOptions) -> Digest:
    """The digest of the Dockerfile's bytes (of its text when it came from stdin)."""
    if options.dockerfile_path is not None:
        try:
            return Digest.from_bytes(options.dockerfile_path.read_bytes())
        except OSError:
            pass
    return Digest.from_bytes(options.dockerfile_text.encode())


def _context_digest(options: BuildOptions) -> Digest | None:
    """One digest of the context as the build saw it (``.dockerignore`` applied)."""
    from builder.frontend.dockerignore import DockerIgnore, find_dockerignore
    from builder.solver.contenthash import StatCache, tree_digest

    ignore = DockerIgnore.load(find_dockerignore(
        options.context, options.dockerfile_path or options.context / "Dockerfile"))
    try:
        return Digest("sha256", tree_digest(options.context, ignore, StatCache(None)))
    except OSError:
        return None


def build_facts(options: BuildOptions, request: AttestRequest, record: BuildRecord
                ) -> BuildFacts:
    """The :class:`BuildFacts` of a finished build."""
    return BuildFacts(
        builder_id=request.builder_id or default_builder_id(),
        builder_platform=record.builder_platform,
        dockerfile_name=options.dockerfile_name,
        dockerfile_digest=_dockerfile_digest(options),
        context_digest=_context_digest(options),
        bases=unique_bases(record.bases),
        started=record.started,
        finished=record.finished,
        invocation_id=uuid.uuid4().hex,
        build_args=dict(options.build_args),
        target=options.target,
        platform=options.platform,
        git=git_source(options.context) if request.provenance == "max" else None,
    )


def sbom_statement(store: BuildStore, chain: str | None, image: StoredImage,
                   names: Sequence[str], created: str,
                   subjects: Sequence[tuple[str, Digest]]) -> Statement:
    """The SPDX statement of the packages in committed snapshot ``chain``."""
    from builder.attestations.packages import scan
    from builder.attestations.spdx import SPDX_PREDICATE, spdx_document
    from builder.store import view_of

    try:
        with view_of(store, chain) as root:
            packages = scan(root)
    except OSError as exc:
        raise AttestationError(f"--sbom: cannot read the image's filesystem: "
                               f"{exc.strerror or exc}") from None
    document = spdx_document(packages, name=names[0] if names else "image", created=created,
                             creator=f"pybuild-{_version()}",
                             namespace_seed=str(image.manifest.digest))
    return Statement(SPDX_PREDICATE, document, tuple(subjects))


@dataclass(frozen=True)
class PlatformImage:
    """One platform's built image and the committed snapshot of its filesystem."""

    image: StoredImage
    chain: str | None


def _platform(image: StoredImage) -> Platform:
    config = image.image
    return Platform(architecture=config.architecture, os=config.os, variant=config.variant)


def _bases_for(record: BuildRecord, platform: Platform, platforms: Sequence[Platform]
               ) -> tuple[BaseImage, ...]:
    """The base images one platform's build used: with several platforms, those of its
    platform and those of no image's platform (stages on the build platform)."""
    if len(platforms) < 2:
        return record.bases

    def key(p: Platform) -> tuple[str, str, str | None]:
        return (p.os, p.architecture, p.variant)
    own = {key(p) for p in platforms}
    return tuple(b for b in record.bases if key(b.platform) == key(platform)
                 or key(b.platform) not in own)


def attest_images(store: BuildStore, options: BuildOptions, request: AttestRequest,
                  images: Sequence[PlatformImage], names: Sequence[str], record: BuildRecord,
                  annotations: Mapping[str, str] | None = None) -> Descriptor:
    """Store the attestations ``request`` asks for about every image (one attestation
    manifest each) and the index holding the images and their attestation manifests (with
    ``annotations``); return the index's descriptor."""
    platforms = [_platform(i.image) for i in images]
    facts = build_facts(options, request, record) if request.provenance is not None else None
    entries, attestations = [], []
    for item, platform in zip(images, platforms, strict=True):
        entry = replace(item.image.manifest, platform=platform)
        subjects = tuple((image_purl(n, platform), item.image.manifest.digest) for n in names)
        statements = []
        if request.sbom:
            created = record.finished if record.epoch is None else timestamp(record.epoch)
            statements.append(sbom_statement(store, item.chain, item.image, names, created,
                                             subjects))
        if facts is not None and request.provenance is not None:
            own = replace(facts, bases=unique_bases(_bases_for(record, platform, platforms)))
            statements.append(Statement(PROVENANCE_V1,
                                        provenance_predicate(own, request.provenance),
                                        subjects))
        entries.append(entry)
        attestations.append(store_attestation_manifest(store.content, entry, statements))
    return store_index(store.content, image_index(entries, attestations, annotations))


def attest_image(store: BuildStore, options: BuildOptions, request: AttestRequest,
                 image: StoredImage, chain: str | None, names: Sequence[str],
                 record: BuildRecord) -> Descriptor:
    """:func:`attest_images` of one image."""
    return attest_images(store, options, request, [PlatformImage(image, chain)], names,
                         record)
