"""The metadata seam of the registry.

Blob *bytes* live in a content store shared by every repository; the metadata says which
repository may see which blob (a *link*, made by an upload or a mount), which manifests a
repository holds, which tags point where, which manifests refer to which subject, and which
upload sessions are open.

Rules every implementation keeps:

- Each method is atomic. ``put_manifest`` writes the manifest row, its tags and its
  referrer entry in one transaction; a crash leaves either all of it or none.
- Repositories come into being with their first link, manifest or upload; they are listed by
  ``repositories`` only while they hold a link or a manifest.
- Names and tags are compared as exact strings; listing is sorted by byte order and paginated
  with ``last`` (exclusive) and ``n`` (``None`` = all).
- Deleting a manifest removes every tag that points to it. Deleting a tag removes only it.
- Safe to use from several threads and several processes sharing one store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from layerstore.digest import Digest
from layerstore.errors import FailedPrecondition, Unavailable


class MetadataUnavailable(Unavailable):
    """The metadata database cannot be used right now (unreachable, restarting, timed out);
    the message names the setting and the cause. The server answers it with 503."""


class TagMoved(FailedPrecondition):
    """``put_manifest`` would move a tag it was told to keep where it is (an immutable
    tag); nothing was written."""

    def __init__(self, repository: str, tag: str, digest: Digest) -> None:
        super().__init__(f"tag {tag!r} of {repository!r} points at {digest}; it may not move")
        self.repository = repository
        self.tag = tag
        self.digest = digest


class TagProtected(FailedPrecondition):
    """``delete_manifest`` would remove a tag it was told is protected; nothing was
    removed."""

    def __init__(self, repository: str, tag: str, digest: Digest) -> None:
        super().__init__(f"tag {tag!r} of {repository!r} points at {digest}; it may not go")
        self.repository = repository
        self.tag = tag
        self.digest = digest


@dataclass(frozen=True)
class ManifestRecord:
    """A manifest held by a repository (its bytes are in the content store under ``digest``).

    ``references`` lists everything it needs: an image manifest's config and layers, an
    index's child manifests (never its ``subject``). ``created_at`` is when it was put;
    garbage collection measures the grace period of an untagged manifest from it.
    """

    digest: Digest
    media_type: str
    size: int
    references: tuple[Digest, ...] = ()
    subject: Digest | None = None
    artifact_type: str | None = None
    annotations: Mapping[str, str] | None = None
    created_at: float = 0.0


@dataclass(frozen=True)
class UploadRecord:
    """An open blob upload session (its bytes are kept by the storage driver; ``labels`` hold
    what resuming them needs)."""

    uuid: str
    repository: str
    started_at: float
    labels: Mapping[str, str] = field(default_factory=dict)


class MetadataStore(Protocol):
    """Registry metadata; see the module docstring for the rules."""

    def repositories(self, last: str | None = None, n: int | None = None) -> list[str]:
        """Repository names, sorted, after ``last``, at most ``n``."""
        ...

    def repository_exists(self, repository: str) -> bool:
        """Whether the repository holds any link or manifest."""
        ...

    def namespace_usage(self, namespace: str) -> tuple[int, int]:
        """``(repositories, bytes)`` under ``namespace/``: the repositories holding a link or
        a manifest, and the size of the distinct blobs and manifests they hold (a digest
        held by several of them counts once)."""
        ...

    def namespace_holds(self, namespace: str, digest: Digest) -> bool:
        """Whether a repository under ``namespace/`` links blob ``digest`` or holds it as a
        manifest."""
        ...

    def repository_usage(self, repository: str) -> int:
        """The bytes ``repository`` itself holds: the size of the distinct blobs it links
        and manifests it holds (a digest once)."""
        ...

    def link_blob(self, repository: str, digest: Digest, size: int) -> None:
        """Make blob ``digest`` visible in ``repository`` (idempotent)."""
        ...

    def blob_size(self, repository: str, digest: Digest) -> int | None:
        """The size of a blob linked into ``repository``, or ``None`` if it is not linked."""
        ...

    def unlink_blob(self, repository: str, digest: Digest) -> bool:
        """Remove a blob link; whether there was one."""
        ...

    def linked_blobs(self) -> set[Digest]:
        """Every digest linked into any repository (for garbage collection)."""
        ...

    def forget_blob(self, digest: Digest) -> None:
        """Remove every link to ``digest`` (garbage collection swept its bytes)."""
        ...

    def put_manifest(self, repository: str, record: ManifestRecord,
                     tags: tuple[str, ...] = (), *, fixed: tuple[str, ...] = ()) -> None:
        """Store (or refresh) a manifest in ``repository`` and point ``tags`` at it.

        Refreshing replaces the stored record with ``record``; tags already pointing at it
        stay. A tag of ``tags`` also in ``fixed`` may be created or re-pointed at the digest
        it already has, never moved: if it points at another digest (even one a concurrent
        writer just put), :class:`TagMoved` is raised and nothing is written."""
        ...

    def get_manifest(self, repository: str, digest: Digest) -> ManifestRecord | None:
        """A manifest of ``repository`` by digest."""
        ...

    def resolve(self, repository: str, reference: str) -> ManifestRecord | None:
        """A manifest by tag or by digest string (``sha256:…``), in one lookup (tags never
        contain ``:``, so a reference with one is a digest)."""
        ...

    def delete_manifest(self, repository: str, digest: Digest, *,
                        protected: Callable[[str], bool] | None = None) -> bool:
        """Remove a manifest and every tag pointing at it; whether it existed. With
        ``protected``, if a tag pointing at it is one ``protected`` says is (an immutable
        tag, even one a concurrent writer just put there), :class:`TagProtected` is raised
        and nothing is removed."""
        ...

    def manifests(self, repository: str) -> Iterator[ManifestRecord]:
        """Every manifest of ``repository``."""
        ...

    def tags(self, repository: str, last: str | None = None,
             n: int | None = None) -> list[str]:
        """Tag names of ``repository``, sorted, after ``last``, at most ``n``."""
        ...

    def tagged(self, repository: str) -> dict[str, Digest]:
        """Every tag of ``repository`` with the digest it points at."""
        ...

    def delete_tag(self, repository: str, tag: str) -> bool:
        """Remove one tag; whether it existed."""
        ...

    def referrers(self, repository: str, subject: Digest,
                  artifact_type: str | None = None) -> list[ManifestRecord]:
        """Manifests of ``repository`` whose ``subject`` is ``subject`` (optionally only of
        one artifact type), sorted by digest."""
        ...

    def start_upload(self, record: UploadRecord) -> None:
        """Record a new upload session; ``AlreadyExists`` if its uuid is taken."""
        ...

    def get_upload(self, uuid: str) -> UploadRecord | None:
        """An open upload session."""
        ...

    def update_upload(self, uuid: str, labels: Mapping[str, str]) -> bool:
        """Replace the labels of an open upload session (where a storage backend keeps the
        state a later request, in any process, resumes the upload from); whether the session
        exists."""
        ...

    def end_upload(self, uuid: str) -> bool:
        """Forget an upload session (completed or cancelled); whether it existed."""
        ...

    def uploads(self, started_before: float | None = None) -> list[UploadRecord]:
        """Open upload sessions (optionally only those started before a time), oldest
        first."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


def visible_size(store: MetadataStore, repository: str, digest: Digest) -> int | None:
    """The size of ``digest`` as ``repository`` sees it: a blob linked to it, else one of
    its manifests; None when it sees neither."""
    size = store.blob_size(repository, digest)
    if size is None:
        record = store.get_manifest(repository, digest)
        if record is not None:
            size = record.size
    return size
