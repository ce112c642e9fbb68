"""Repository-scoped blobs over a :class:`~registry.storage.driver.StorageDriver` and the
metadata store: what ``registry serve`` uses with either storage, the filesystem driver over
``root/content`` or S3 (where any number of stateless server processes share one bucket and
one metadata database).

Blob bytes live once at ``blobs/<alg>/<hex>``; a repository sees a blob only through a
link in the metadata. Upload sessions are :class:`~registry.storage.uploads.UploadService`.
A cross-repository mount only adds a link: no byte is copied. Every failure is a
:mod:`registry.storage.errors` error; the handlers turn them into OCI error codes. Small
blobs (manifests) are verified when read and then kept in a :class:`ContentCache`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TypeVar

from layerstore.digest import Digest
from layerstore.errors import DigestMismatch as StoredDigestMismatch
from registry.locking import push_guard
from registry.metadata.store import MetadataStore, UploadRecord, visible_size
from registry.storage.cache import ContentCache
from registry.storage.driver import Reader, StorageDriver
from registry.storage.errors import (
    BlobUnknown,
    PathNotFound,
    StorageError,
)
from registry.storage.filesystem import FilesystemDriver
from registry.storage.paths import blob_path
from registry.storage.threads import run_blocking
from registry.storage.uploads import Adopter, UploadHandle, UploadService

T = TypeVar("T")


class BlobService:
    """Blobs as repositories see them, and their upload sessions (module docstring).

    ``lock_root`` holds the lock that keeps garbage collection's sweep and pushes apart;
    ``adopt`` takes over upload sessions an older release started (see
    :mod:`registry.storage.legacy`)."""

    def __init__(self, driver: StorageDriver, metadata: MetadataStore, *,
                 cache_bytes: int = 64 << 20, wait: float = 5.0,
                 lock_root: Path | None = None, adopt: Adopter | None = None) -> None:
        self.driver = driver
        self.metadata = metadata
        self._lock_root = lock_root
        self.uploads = UploadService(driver, metadata, wait=wait, guard=self.guard,
                                     adopt=adopt)
        self._cache = ContentCache(cache_bytes)

    def storage_problem(self) -> str | None:
        """Why the backend cannot be used right now, if it cannot (one listing call; on the
        filesystem, whether the directory is writable)."""
        try:
            self.driver.list("")
        except StorageError as exc:
            return f"{self.driver.name} storage: {exc}"
        if isinstance(self.driver, FilesystemDriver) and not os.access(self.driver.root,
                                                                        os.W_OK):
            return f"content store {str(self.driver.root)!r} is not writable"
        return None

    # Committed blobs.

    def size(self, repository: str, digest: Digest) -> int | None:
        """The size of ``digest`` as ``repository`` sees it, or ``None``."""
        return visible_size(self.metadata, repository, digest)

    def stat(self, repository: str, digest: Digest) -> int:
        """Like :meth:`size`, but ``BlobUnknown`` when ``repository`` does not see it."""
        size = self.size(repository, digest)
        if size is None:
            raise BlobUnknown(f"blob {digest} is unknown to repository {repository!r}",
                              str(digest))
        return size

    def blob_location(self, repository: str, digest: Digest) -> str | None:
        """A URL to send the client to for the blob's bytes (``redirect = true``)."""
        return self.driver.redirect_url(blob_path(digest))

    async def open_blob(self, repository: str, digest: Digest, start: int) -> Reader:
        """A stream of the blob's bytes from ``start``; ``BlobUnknown`` if they are gone."""
        try:
            return await run_blocking(self.driver.reader, blob_path(digest), start)
        except PathNotFound:
            raise BlobUnknown(f"blob {digest} of repository {repository!r} has no content",
                              str(digest)) from None

    async def delete(self, repository: str, digest: Digest) -> None:
        """Unlink a blob from ``repository``; ``BlobUnknown`` if it was not linked."""
        if not await run_blocking(self.metadata.unlink_blob, repository, digest):
            raise BlobUnknown(f"blob {digest} is not linked into repository {repository!r}",
                              str(digest))

    async def read_small(self, digest: Digest) -> bytes:
        """The bytes of a small blob (a manifest), verified once and then cached."""
        data = self._cache.get(digest)
        if data is None:
            data = await run_blocking(self._read_verified, digest)
            self._cache.put(digest, data)
        return data

    def _read_verified(self, digest: Digest) -> bytes:
        try:
            data = self.driver.get_content(blob_path(digest))
        except PathNotFound:
            raise BlobUnknown(f"content of {digest} is missing", str(digest)) from None
        actual = Digest.from_bytes(data, digest.algorithm)
        if actual != digest:
            # Damaged storage is no request's fault and retrying will not help: an internal
            # error (500, logged with its traceback), as the spec's UNKNOWN.
            raise StoredDigestMismatch(f"stored content of {digest} hashes to {actual}")
        return data

    def remember(self, digest: Digest, data: bytes) -> None:
        """Put bytes known to hash to ``digest`` into the cache."""
        self._cache.put(digest, data)

    def store_small(self, digest: Digest, data: bytes) -> None:
        """Store verified bytes (a manifest) as blob ``digest`` unless it is there."""
        path = blob_path(digest)
        with contextlib.suppress(PathNotFound):
            if self.driver.stat(path).size == len(data):
                return
        self.driver.put_content(path, data)

    def guard(self) -> AbstractContextManager[None]:
        """The push side of the GC lock under ``lock_root`` (none without one)."""
        return push_guard(self._lock_root) if self._lock_root is not None else nullcontext()

    async def run_guarded(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a thread while holding :meth:`guard` (no garbage collection sweep
        can delete content between its checks and its links)."""
        def guarded() -> T:
            with self.guard():
                return fn()
        return await run_blocking(guarded)

    async def mount(self, repository: str, digest: Digest, source: str | None) -> int | None:
        """Link ``digest`` into ``repository`` if ``source`` has it (without a source: if
        the registry holds it); its size, or ``None``. No bytes are copied."""
        return await self.run_guarded(lambda: self._mount(repository, digest, source))

    def _mount(self, repository: str, digest: Digest, source: str | None) -> int | None:
        try:
            stored = self.driver.stat(blob_path(digest)).size
        except PathNotFound:
            return None
        if source is not None and self.metadata.blob_size(source, digest) is None:
            return None
        self.metadata.link_blob(repository, digest, stored)
        return stored

    # Upload sessions.

    async def start_upload(self, repository: str) -> UploadRecord:
        """Open a new upload session for ``repository``."""
        return await self.uploads.start(repository)

    def upload_record(self, repository: str, upload_id: str) -> UploadRecord:
        """The open session ``upload_id`` of ``repository``."""
        return self.uploads.record(repository, upload_id)

    def upload_offset(self, upload_id: str) -> int:
        """How many bytes the session holds."""
        return self.uploads.offset(upload_id)

    async def upload_status(self, repository: str, upload_id: str) -> int:
        """How many bytes the open session holds."""
        return await self.uploads.status(repository, upload_id)

    @contextlib.asynccontextmanager
    async def upload(self, repository: str, upload_id: str) -> AsyncIterator[UploadHandle]:
        """Hold the session ``upload_id`` of ``repository`` for one request."""
        async with self.uploads.upload(repository, upload_id) as handle:
            yield handle

    async def cancel_upload(self, repository: str, upload_id: str) -> None:
        """End a session and discard its bytes."""
        await self.uploads.cancel(repository, upload_id)

    async def reap_idle(self) -> None:
        """Nothing is held between requests."""
        await asyncio.sleep(0)

    async def close(self) -> None:
        """Nothing to release."""
        await asyncio.sleep(0)
