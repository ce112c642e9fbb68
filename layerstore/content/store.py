"""The content store seam, after containerd's ``content.Store``.

Lifecycle of a blob:

1. ``writer(ref, total=, expected=)`` opens (or resumes) an *ingest* named ``ref``. Ingests
   are private: nothing in them is visible through ``info``/``reader``/``walk``. An ingest
   persists across process restarts until committed or aborted; reopening the same ref resumes
   at ``status(ref).offset``. Only one writer may hold a ref at a time (``Unavailable``).
2. ``ContentWriter.write`` streams bytes in; ``status(ref)`` reports progress.
3. ``ContentWriter.commit(size, expected)`` verifies the size and digest, fsyncs, and atomically
   renames the data to ``blobs/<alg>/<hex>``; only then is the blob visible. A mismatch raises
   ``DigestMismatch``/``SizeMismatch`` and stores nothing. Committing content that already
   exists is not an error (concurrent writers of one digest both succeed; one copy is kept).
4. ``abort(ref)`` (or ``ContentWriter.abort``) discards an ingest.
5. ``delete(digest)`` removes a committed blob; readers already open keep working.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from layerstore.digest import Digest


@dataclass(frozen=True)
class Info:
    """A committed blob."""

    digest: Digest
    size: int
    created_at: float


@dataclass(frozen=True)
class IngestStatus:
    """Progress of an open ingest."""

    ref: str
    offset: int
    total: int | None
    expected: Digest | None
    started_at: float
    updated_at: float


class ContentWriter(Protocol):
    """A writer into one ingest; see the module docstring for the lifecycle."""

    @property
    def ref(self) -> str:
        """The ingest's name."""
        ...

    @property
    def offset(self) -> int:
        """How many bytes the ingest holds."""
        ...

    def write(self, data: bytes, /) -> int:
        """Append bytes; return how many were taken."""
        ...

    def digest(self) -> Digest:
        """The digest of what has been written so far."""
        ...

    def commit(self, size: int | None = None, expected: Digest | None = None) -> Digest:
        """Verify and publish the blob; return its digest. Closes the writer."""
        ...

    def close(self) -> None:
        """Release the ingest without committing; it stays resumable. A no-op once closed,
        committed or aborted."""
        ...

    def abort(self) -> None:
        """Discard the ingest; a no-op once committed or aborted."""
        ...

    def __enter__(self) -> ContentWriter: ...
    def __exit__(self, *exc: object) -> None: ...


class ContentStore(Protocol):
    """A content-addressable blob store; see the module docstring for the lifecycle."""

    def info(self, digest: Digest) -> Info:
        """The committed blob ``digest``; ``NotFound`` if absent."""
        ...

    def exists(self, digest: Digest) -> bool:
        """Whether ``digest`` is committed."""
        ...

    def reader(self, digest: Digest, offset: int = 0) -> BinaryIO:
        """A binary file positioned at ``offset`` in the blob; ``NotFound`` if absent."""
        ...

    def writer(
        self, ref: str, total: int | None = None, expected: Digest | None = None
    ) -> ContentWriter:
        """Open or resume the ingest ``ref``; ``Unavailable`` if another writer holds it."""
        ...

    def status(self, ref: str) -> IngestStatus:
        """Progress of the ingest ``ref``; ``NotFound`` if there is none."""
        ...

    def list_statuses(self) -> list[IngestStatus]:
        """Every open ingest."""
        ...

    def abort(self, ref: str) -> None:
        """Discard the ingest ``ref``; ``NotFound`` if there is none."""
        ...

    def walk(self) -> Iterator[Info]:
        """Every committed blob, in no particular order."""
        ...

    def delete(self, digest: Digest) -> None:
        """Remove a committed blob; ``NotFound`` if absent."""
        ...
