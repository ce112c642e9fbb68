"""Manifests of repositories: storing a validated manifest (its bytes as a blob, its record,
tags and referrer entry in the metadata) after checking that everything it references is
there, resolving, reading and deleting. The handlers parse and answer; this writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from layerstore.digest import Digest
from layerstore.oci import Descriptor, MediaType
from registry.metadata.store import ManifestRecord, MetadataStore
from registry.storage.errors import ManifestReferencesMissing, MissingReference

T = TypeVar("T")
MANIFEST_TYPES = MediaType.MANIFESTS | MediaType.INDEXES


@dataclass(frozen=True)
class ParsedManifest:
    """A validated manifest or index ready to store: its record, the blobs it needs linked
    in the repository and the manifests it needs present there."""

    record: ManifestRecord
    blobs: tuple[Descriptor, ...]
    children: tuple[Descriptor, ...]


class ManifestBytes(Protocol):
    """What the manifest service needs of blob storage."""

    def store_small(self, digest: Digest, data: bytes) -> None:
        """Store verified bytes as blob ``digest`` unless it is there."""
        ...

    def remember(self, digest: Digest, data: bytes) -> None:
        """Cache bytes known to hash to ``digest``."""
        ...

    async def read_small(self, digest: Digest) -> bytes:
        """The verified bytes of a small blob."""
        ...

    async def run_guarded(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a thread where no garbage collection sweep interleaves."""
        ...


def missing_references(meta: MetadataStore, repository: str,
                       parsed: ParsedManifest) -> tuple[MissingReference, ...]:
    """What ``parsed`` needs that ``repository`` lacks (or holds with another size)."""
    problems: list[MissingReference] = []

    def check(desc: Descriptor, size: int | None, kind: str) -> None:
        if size is None or size != desc.size:
            problems.append(MissingReference(kind, str(desc.digest), repository, desc.size,
                                             size))

    for desc in parsed.blobs:
        if desc.urls and desc.media_type in MediaType.NONDISTRIBUTABLE:
            continue
        check(desc, meta.blob_size(repository, desc.digest), "blob")
    for desc in parsed.children:
        child = meta.get_manifest(repository, desc.digest)
        size = child.size if child is not None else None
        if size is None and desc.media_type not in MANIFEST_TYPES:
            size = meta.blob_size(repository, desc.digest)
        check(desc, size, "manifest")
    return tuple(problems)


class ManifestService:
    """Manifests over the metadata store and blob storage."""

    def __init__(self, metadata: MetadataStore, blobs: ManifestBytes) -> None:
        self.metadata = metadata
        self.blobs = blobs

    async def put(self, repository: str, parsed: ParsedManifest, body: bytes,
                  tags: tuple[str, ...], fixed: tuple[str, ...] = ()) -> None:
        """Store a manifest and point ``tags`` at it; ``ManifestReferencesMissing`` if the
        repository lacks what it references, ``TagMoved`` if a tag of ``fixed`` points at
        another manifest."""
        record = parsed.record

        def store() -> None:
            problems = missing_references(self.metadata, repository, parsed)
            if problems:
                raise ManifestReferencesMissing(problems)
            self.blobs.store_small(record.digest, body)
            self.metadata.put_manifest(repository, record, tags, fixed=fixed)

        await self.blobs.run_guarded(store)
        self.blobs.remember(record.digest, body)

    def resolve(self, repository: str, reference: str) -> ManifestRecord | None:
        """A manifest by tag or digest."""
        return self.metadata.resolve(repository, reference)

    async def content(self, record: ManifestRecord) -> bytes:
        """A manifest's bytes (``BlobUnknown`` if they are gone)."""
        return await self.blobs.read_small(record.digest)

    def delete(self, repository: str, digest: Digest,
               protected: Callable[[str], bool] | None = None) -> bool:
        """Remove a manifest and its tags; whether it existed. ``TagProtected`` if one of
        its tags is ``protected``."""
        return self.metadata.delete_manifest(repository, digest, protected=protected)

    def delete_tag(self, repository: str, tag: str) -> bool:
        """Remove one tag; whether it existed."""
        return self.metadata.delete_tag(repository, tag)
