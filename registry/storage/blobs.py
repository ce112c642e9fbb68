"""Repository-scoped blob storage over a shared content store and the metadata store.

Blob bytes live once in the content store; a repository sees a blob only through a *link*
in the metadata (made by an upload commit or a mount). Upload sessions are recorded in the
metadata and their bytes stream into the content-store ingest ``upload-<uuid>``, so a
session survives a server restart and resumes at the bytes already on disk.

An ingest's writer re-hashes the bytes already written when it is opened, so a process keeps
a session's writer open for a while after a request (``linger``) in case the next chunk or
the closing PUT follows. Another process that needs the session meanwhile leaves a marker
file in ``<root>/run/wanted/``; the holder sees it on its next housekeeping tick and lets go.
A request that cannot get a session within ``wait`` seconds (another request is still
streaming into it) is refused with TOOMANYREQUESTS.

A commit first writes the digest it is about to publish to ``<root>/commits/<uuid>``; a crash
between publishing the bytes and ending the session leaves that journal, and the next request
for the session links the blob and ends the session (so the client learns it is done).
File writes, hashing and metadata writes run in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
import uuid as uuidlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar

from layerstore.content.copy import put_bytes
from layerstore.content.store import ContentStore, ContentWriter
from layerstore.digest import CHUNK, Digest
from layerstore.errors import DigestMismatch, LayerstoreError, NotFound, Unavailable
from registry.errors import RegistryError
from registry.locking import push_guard
from registry.metadata.store import MetadataStore, UploadRecord
from registry.storage import errors as se

T = TypeVar("T")
UPLOAD_PREFIX = "upload-"


class FileContentStore(ContentStore, Protocol):
    """A content store whose committed blobs are plain files that can be served directly."""

    def path(self, digest: Digest) -> Path:
        """The file of a committed blob; ``NotFound`` if absent."""
        ...


async def run_blocking(fn: Callable[..., T], *args: object) -> T:
    """Run a blocking call in the default thread pool."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(fn, *args))


def _open_at(path: Path, start: int) -> BinaryIO:
    f = open(path, "rb")  # noqa: SIM115 - the response closes it
    f.seek(start)
    return f


def ingest_ref(upload_id: str) -> str:
    """The content-store ingest that holds an upload session's bytes."""
    return UPLOAD_PREFIX + upload_id


def range_header(offset: int) -> str:
    """The ``Range`` value for an upload holding ``offset`` bytes (``0-0`` when empty)."""
    return f"0-{max(offset - 1, 0)}"


class ContentCache:
    """A size-bounded LRU of small immutable blobs (manifests) keyed by digest."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._size = 0
        self._items: OrderedDict[Digest, bytes] = OrderedDict()

    def get(self, digest: Digest) -> bytes | None:
        """The cached bytes of ``digest``, if any."""
        data = self._items.get(digest)
        if data is not None:
            self._items.move_to_end(digest)
        return data

    def put(self, digest: Digest, data: bytes) -> None:
        """Remember ``data`` (skipped when larger than a quarter of the budget)."""
        if len(data) > self._max // 4 or digest in self._items:
            return
        self._items[digest] = data
        self._size += len(data)
        while self._size > self._max and self._items:
            _, old = self._items.popitem(last=False)
            self._size -= len(old)


@dataclass(eq=False)
class _Slot:
    """This process's hold on one upload session's ingest writer."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    writer: ContentWriter | None = None
    idle_since: float = 0.0
    users: int = 0


class UploadHandle:
    """Exclusive access to one upload session while a request works on it."""

    def __init__(self, service: BlobService, slot: _Slot, record: UploadRecord) -> None:
        self._service = service
        self._slot = slot
        self.record = record

    @property
    def _writer(self) -> ContentWriter:
        writer = self._slot.writer
        if writer is None:
            raise se.UploadUnknown(f"upload {self.record.uuid} has already been closed",
                                   self.record.uuid)
        return writer

    @property
    def offset(self) -> int:
        """How many bytes the session holds."""
        return self._writer.offset

    async def receive(self, body: AsyncIterator[bytes], *, start: int | None = None,
                      length: int | None = None) -> int:
        """Append a request body to the session; return the new offset.

        ``start`` (from ``Content-Range``) must equal the current offset, else RANGE_INVALID
        (416) with the current ``Range``. ``length`` is the byte count the client declared;
        receiving another count is SIZE_INVALID (what did arrive stays in the session).
        Bytes are gathered into ~1 MiB pieces and written by a worker thread while the next
        piece arrives.
        """
        writer = self._writer
        if start is not None and start != writer.offset:
            raise se.OffsetMismatch(
                f"upload {self.record.uuid} to {self.record.repository!r} holds "
                f"{writer.offset} bytes; a chunk must start at {writer.offset}, not {start}",
                writer.offset)
        loop = asyncio.get_running_loop()
        received = 0
        buffer = bytearray()
        pending: asyncio.Future[int] | None = None
        try:
            async for chunk in body:
                buffer += chunk
                received += len(chunk)
                if len(buffer) >= CHUNK:
                    if pending is not None:
                        await pending
                    pending = loop.run_in_executor(None, writer.write, buffer)
                    buffer = bytearray()
            if pending is not None:
                await pending
                pending = None
            if buffer:
                await loop.run_in_executor(None, writer.write, buffer)
        finally:
            if pending is not None:
                with contextlib.suppress(Exception):
                    await pending
        if length is not None and received != length:
            raise se.SizeMismatch(
                f"upload {self.record.uuid} to {self.record.repository!r}: the request "
                f"declared {length} bytes but sent {received}",
                {"declared": length, "received": received})
        return writer.offset

    async def commit(self, digest: Digest) -> int:
        """Verify the session's bytes against ``digest``, publish and link the blob into the
        session's repository, and end the session; return the blob's size.

        A mismatch is DIGEST_INVALID; the bytes are discarded and the session ends.
        """
        writer = self._writer
        self._slot.writer = None
        return await run_blocking(self._service._commit, writer, self.record, digest)

    async def cancel(self) -> None:
        """Discard the session's bytes and end it."""
        writer = self._writer
        self._slot.writer = None
        await run_blocking(self._service._cancel, writer, self.record)


class BlobService:
    """Blobs as repositories see them, and their upload sessions (see the module docstring)."""

    def __init__(self, content: FileContentStore, metadata: MetadataStore, root: Path, *,
                 cache_bytes: int = 64 << 20, linger: float = 5.0, wait: float = 5.0
                 ) -> None:
        self.content = content
        self.metadata = metadata
        self._root = root
        self._cache = ContentCache(cache_bytes)
        self._linger = linger
        self._wait = wait
        self._wanted = root / "run" / "wanted"
        self._wanted.mkdir(parents=True, exist_ok=True)
        self._commits = root / "commits"
        self._commits.mkdir(parents=True, exist_ok=True)
        self._slots: dict[str, _Slot] = {}

    def storage_problem(self) -> str | None:
        """Why the content store cannot take writes, if it cannot."""
        content = self._root / "content"
        if not os.access(content, os.W_OK):
            return f"content store {str(content)!r} is not writable"
        return None

    # Committed blobs.

    def size(self, repository: str, digest: Digest) -> int | None:
        """The size of ``digest`` as ``repository`` sees it (a linked blob or one of its
        manifests), or ``None``."""
        size = self.metadata.blob_size(repository, digest)
        if size is None:
            record = self.metadata.get_manifest(repository, digest)
            if record is not None:
                size = record.size
        return size

    def stat(self, repository: str, digest: Digest) -> int:
        """Like :meth:`size`, but BLOB_UNKNOWN when ``repository`` does not see the blob."""
        size = self.size(repository, digest)
        if size is None:
            raise se.BlobUnknown(f"blob {digest} is unknown to repository {repository!r}",
                                 str(digest))
        return size

    def file(self, repository: str, digest: Digest) -> Path:
        """The file holding a blob's bytes; BLOB_UNKNOWN if they are gone."""
        try:
            return self.content.path(digest)
        except NotFound:
            raise se.BlobUnknown(f"blob {digest} of repository {repository!r} has no content",
                                 str(digest)) from None

    def blob_location(self, repository: str, digest: Digest) -> str | None:
        """Local files are served by the registry itself: never a redirect."""
        return None

    async def open_blob(self, repository: str, digest: Digest, start: int) -> BinaryIO:
        """The blob's file, positioned at ``start``; BLOB_UNKNOWN if it is gone."""
        path = self.file(repository, digest)
        try:
            return await run_blocking(_open_at, path, start)
        except FileNotFoundError:
            raise se.BlobUnknown(f"blob {digest} of {repository!r} has no content",
                                 str(digest)) from None

    def store_small(self, digest: Digest, data: bytes) -> None:
        """Store verified bytes (a manifest) as blob ``digest`` unless it is there."""
        put_bytes(self.content, data, expected=digest)

    async def delete(self, repository: str, digest: Digest) -> None:
        """Unlink a blob from ``repository`` (the bytes go when garbage collection finds
        them unreferenced); BLOB_UNKNOWN if it was not linked."""
        if not await run_blocking(self.metadata.unlink_blob, repository, digest):
            raise se.BlobUnknown(
                f"blob {digest} is not linked into repository {repository!r}", str(digest))

    async def read_small(self, digest: Digest) -> bytes:
        """The bytes of a small blob (a manifest), verified once and then cached."""
        data = self._cache.get(digest)
        if data is None:
            data = await run_blocking(self._read_verified, digest)
            self._cache.put(digest, data)
        return data

    def remember(self, digest: Digest, data: bytes) -> None:
        """Put bytes known to hash to ``digest`` into the cache."""
        self._cache.put(digest, data)

    def _read_verified(self, digest: Digest) -> bytes:
        try:
            data = self.content.path(digest).read_bytes()
        except (NotFound, FileNotFoundError):
            raise se.BlobUnknown(f"content of {digest} is missing", str(digest)) from None
        actual = Digest.from_bytes(data, digest.algorithm)
        if actual != digest:
            raise DigestMismatch(f"stored content of {digest} hashes to {actual}")
        return data

    async def run_guarded(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a thread while holding the push guard (no garbage collection sweep
        can delete content between its checks and its links)."""
        def guarded() -> T:
            with push_guard(self._root):
                return fn()
        return await run_blocking(guarded)

    # Cross-repository mount.

    async def mount(self, repository: str, digest: Digest, source: str | None) -> int | None:
        """Link ``digest`` into ``repository`` if ``source`` has it linked (or, without a
        source, if the registry holds it at all); return its size, or ``None``."""
        return await self.run_guarded(lambda: self._mount(repository, digest, source))

    def _mount(self, repository: str, digest: Digest, source: str | None) -> int | None:
        if source is not None:
            size = self.metadata.blob_size(source, digest)
            if size is None or not self.content.exists(digest):
                return None
        else:
            try:
                size = self.content.info(digest).size
            except NotFound:
                return None
        self.metadata.link_blob(repository, digest, size)
        return size

    # Upload sessions.

    async def start_upload(self, repository: str) -> UploadRecord:
        """Open a new upload session for ``repository``."""
        record = UploadRecord(uuid=str(uuidlib.uuid4()), repository=repository,
                              started_at=time.time())
        await run_blocking(self.metadata.start_upload, record)
        return record

    def upload_record(self, repository: str, upload_id: str) -> UploadRecord:
        """The open session ``upload_id`` of ``repository``; BLOB_UPLOAD_UNKNOWN if none."""
        record = self.metadata.get_upload(upload_id)
        if record is None or record.repository != repository:
            raise se.UploadUnknown(
                f"upload {upload_id} is unknown to repository {repository!r}", upload_id)
        return record

    def upload_offset(self, upload_id: str) -> int:
        """How many bytes the session holds (also while another process writes to it)."""
        slot = self._slots.get(upload_id)
        if slot is not None and slot.writer is not None:
            return slot.writer.offset
        try:
            return self.content.status(ingest_ref(upload_id)).offset
        except NotFound:
            return 0

    async def upload_status(self, repository: str, upload_id: str) -> int:
        """How many bytes the open session ``upload_id`` of ``repository`` holds, after
        finishing a commit a crash interrupted; BLOB_UPLOAD_UNKNOWN if there is no session."""
        record = self.upload_record(repository, upload_id)
        if (self._commits / upload_id).exists() and await run_blocking(self._recover, record):
            raise self._ended(record)
        return self.upload_offset(upload_id)

    @staticmethod
    def _ended(record: UploadRecord) -> se.UploadUnknown:
        return se.UploadUnknown(f"upload {record.uuid} to {record.repository!r} has ended",
                                record.uuid)

    def _recover(self, record: UploadRecord) -> bool:
        """Finish a commit that a crash interrupted after the bytes were published (the
        journal names the digest; the ingest is gone or emptied by the publishing rename):
        link the blob if it is there and end the session. Whether the session ended."""
        journal = self._commits / record.uuid
        ref = ingest_ref(record.uuid)
        try:
            digest = Digest.parse(journal.read_text().strip())
        except (OSError, ValueError, LayerstoreError):
            journal.unlink(missing_ok=True)
            return False
        try:
            offset: int | None = self.content.status(ref).offset
        except NotFound:
            offset = None
        published = self.content.exists(digest)
        if offset is not None and (offset > 0 or not published):
            return False
        with push_guard(self._root), contextlib.suppress(NotFound):
            if published:
                size = self.content.info(digest).size
                self.metadata.link_blob(record.repository, digest, size)
        if offset is not None:
            with contextlib.suppress(NotFound, Unavailable):
                self.content.abort(ref)
        self.metadata.end_upload(record.uuid)
        journal.unlink(missing_ok=True)
        return True

    @contextlib.asynccontextmanager
    async def upload(self, repository: str, upload_id: str) -> AsyncIterator[UploadHandle]:
        """Hold the session ``upload_id`` of ``repository`` for the length of a request."""
        record = self.upload_record(repository, upload_id)
        slot = self._slots.get(upload_id)
        if slot is None:
            slot = self._slots[upload_id] = _Slot()
        slot.users += 1
        try:
            try:
                await asyncio.wait_for(slot.lock.acquire(), self._wait)
            except TimeoutError:
                raise self._busy(record) from None
            try:
                if slot.writer is None:
                    slot.writer = await self._open_writer(record)
                try:
                    yield UploadHandle(self, slot, record)
                except (RegistryError, se.StorageError):
                    raise
                except BaseException:
                    await self._release(slot)
                    raise
                finally:
                    slot.idle_since = time.monotonic()
            finally:
                slot.lock.release()
        finally:
            slot.users -= 1
            if slot.users == 0 and slot.writer is None:
                self._slots.pop(upload_id, None)

    @staticmethod
    def _busy(record: UploadRecord) -> se.UploadBusy:
        return se.UploadBusy(
            f"upload {record.uuid} to {record.repository!r} is busy in another request; retry",
            record.uuid)

    async def _open_writer(self, record: UploadRecord) -> ContentWriter:
        deadline = time.monotonic() + self._wait
        if (self._commits / record.uuid).exists() and await run_blocking(self._recover, record):
            raise self._ended(record)
        ref = ingest_ref(record.uuid)
        marker = self._wanted / record.uuid
        try:
            while True:
                try:
                    writer = await run_blocking(self.content.writer, ref)
                    break
                except Unavailable:
                    if time.monotonic() > deadline:
                        raise self._busy(record) from None
                    marker.touch()
                    await asyncio.sleep(0.05)
        finally:
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()
        if self.metadata.get_upload(record.uuid) is None:
            await run_blocking(writer.abort)
            raise self._ended(record)
        return writer

    async def _release(self, slot: _Slot) -> None:
        writer, slot.writer = slot.writer, None
        if writer is not None:
            with contextlib.suppress(Exception):
                await run_blocking(writer.close)

    def _commit(self, writer: ContentWriter, record: UploadRecord, digest: Digest) -> int:
        size = writer.offset
        journal = self._commits / record.uuid
        journal.write_text(str(digest))
        try:
            with push_guard(self._root):
                writer.commit(expected=digest)
                self.metadata.link_blob(record.repository, digest, size)
        except DigestMismatch:
            self.metadata.end_upload(record.uuid)
            journal.unlink(missing_ok=True)
            raise se.DigestMismatch(
                f"upload {record.uuid} to {record.repository!r}: its {size} bytes do not "
                f"match digest {digest}; nothing was stored", str(digest)) from None
        except BaseException:
            writer.close()
            raise
        self.metadata.end_upload(record.uuid)
        journal.unlink(missing_ok=True)
        return size

    def _cancel(self, writer: ContentWriter, record: UploadRecord) -> None:
        writer.abort()
        self.metadata.end_upload(record.uuid)
        (self._commits / record.uuid).unlink(missing_ok=True)

    async def cancel_upload(self, repository: str, upload_id: str) -> None:
        """End the session ``upload_id`` and discard its bytes; BLOB_UPLOAD_UNKNOWN if none."""
        async with self.upload(repository, upload_id) as handle:
            await handle.cancel()

    async def reap_idle(self) -> None:
        """Release writers idle for longer than the linger time, or wanted by another
        process."""
        now = time.monotonic()
        for upload_id, slot in list(self._slots.items()):
            if slot.users or slot.writer is None:
                continue
            if (now - slot.idle_since >= self._linger
                    or os.path.exists(self._wanted / upload_id)):
                await self._release(slot)
                if slot.users == 0 and slot.writer is None:
                    self._slots.pop(upload_id, None)

    async def close(self) -> None:
        """Release every held writer (their sessions stay resumable)."""
        for slot in list(self._slots.values()):
            await self._release(slot)
        self._slots.clear()
