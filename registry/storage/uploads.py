"""Blob upload sessions over a :class:`~registry.storage.driver.StorageDriver` (the
filesystem one of a single server, or S3 shared by replicas that have nothing else in common
but the metadata store).

A session's bytes are written to ``uploads/<uuid>/data`` by a driver writer: a request body
is gathered into ~1 MiB pieces, each written (and hashed) by a worker thread while the next
one arrives. After every request the writer pauses and its state (the byte count; for S3
also the multipart upload id, the parts' ETags and sizes, the pending byte count) is stored in
the session's labels with ``MetadataStore.update_upload``, so the next PATCH or the closing
PUT may land in any process, also after a restart.

Verifying the digest: a process keeps the running hash of a session it received every byte
of, and each pause records the digest of the bytes so far in the labels (``digest``, for
the byte count of ``size``). A closing PUT without a body is verified against that record in
any process (clients that stream a blob in one PATCH, as docker, skopeo and podman do, never
have their bytes read again, whichever server worker or replica the PUT reaches); one that
brings more bytes continues the running hash where this process holds it. Only a PUT that
brings bytes to a process that did not receive the earlier ones (hashlib cannot export a
running hash; a hash written in Python or copying OpenSSL's context structures would be
slower or fragile) reads the committed upload back and hashes it.

One process never lets two requests work on one session at once; two processes do not
coordinate (a client sends a session's requests one after another, as distribution also
assumes). A request that fails half-way may leave an unfinished multipart upload that no
session names: give the bucket a lifecycle rule that aborts incomplete multipart uploads.

Commit: the writer completes ``uploads/<uuid>/data`` (on the filesystem: fsyncs it), the
digest is checked, the labels get ``committing=<digest>`` (a journal), the object is moved to
``blobs/<alg>/<hex>`` (where it appears whole or not at all), linked, and the session ends;
only then is the blob acknowledged. A request that finds the journal of a commit a crash
interrupted finishes it. A session whose stored bytes are gone (or shorter than its labels
say, after a power loss) ends with ``UploadUnknown``: the client starts it again.

A session without driver state may have been started by an older release that kept its
bytes elsewhere: the ``adopt`` hook (:mod:`registry.storage.legacy`) takes it over first.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from layerstore.digest import CHUNK, Digest, Hasher, new_hasher
from layerstore.errors import LayerstoreError
from registry.metadata.store import MetadataStore, UploadRecord
from registry.storage.driver import FileWriter, StorageDriver
from registry.storage.errors import (
    BackendUnavailable,
    DigestMismatch,
    InvalidOffset,
    OffsetMismatch,
    PathBusy,
    PathNotFound,
    SizeMismatch,
    StorageError,
    UploadBusy,
    UploadUnknown,
)
from registry.storage.paths import blob_path, upload_dir, upload_path
from registry.storage.threads import run_blocking

COMMITTING = "committing"
SIZE = "size"
DIGEST = "digest"
RUNNING_HASH = "sha256"
#: Takes over a session that has no driver state yet (see the module docstring).
Adopter = Callable[[UploadRecord], UploadRecord]


def labels_offset(labels: Mapping[str, str]) -> int:
    """How many bytes a session holds, by its labels."""
    try:
        return int(labels.get(SIZE, "0"))
    except ValueError:
        return 0


def recorded_digest(labels: Mapping[str, str], size: int, algorithm: str) -> Digest | None:
    """The digest a pause recorded of a session's first ``size`` bytes, if it recorded one of
    that many bytes in ``algorithm``."""
    text = labels.get(DIGEST)
    if text is None or labels_offset(labels) != size:
        return None
    try:
        recorded = Digest.parse(text)
    except LayerstoreError:
        return None
    return recorded if recorded.algorithm == algorithm else None


@dataclass(eq=False)
class _Running:
    """This process's running hash of a session, valid while ``offset`` is its size."""

    offset: int
    hasher: Hasher = field(default_factory=lambda: new_hasher(RUNNING_HASH))


class UploadHandle:
    """One request's hold on an upload session (see :meth:`UploadService.upload`)."""

    def __init__(self, service: UploadService, record: UploadRecord) -> None:
        self._service = service
        self.record = record
        self.labels: dict[str, str] = dict(record.labels)
        self._ended = False

    @property
    def offset(self) -> int:
        """How many bytes the session holds."""
        return labels_offset(self.labels)

    def _writer(self) -> FileWriter:
        driver = self._service.driver
        path = upload_path(self.record.uuid)
        try:
            if SIZE not in self.labels:
                return driver.writer(path)
            return driver.writer(path, append=True, state=self.labels)
        except PathBusy:
            raise self._service.busy(self.record) from None
        except (PathNotFound, InvalidOffset) as exc:
            self._service.discard(self.record, {})
            raise UploadUnknown(
                f"upload {self.record.uuid} to {self.record.repository!r} lost the bytes it "
                f"held ({exc}); start the upload again", self.record.uuid) from None

    async def receive(self, body: AsyncIterator[bytes], *, start: int | None = None,
                      length: int | None = None) -> int:
        """Append a request body; return the new offset. ``start`` must be the current
        offset (``OffsetMismatch``); a body of another length than ``length`` is
        ``SizeMismatch`` (what arrived stays in the session)."""
        self._check_open()
        uuid, offset = self.record.uuid, self.offset
        if start is not None and start != offset:
            raise OffsetMismatch(
                f"upload {uuid} to {self.record.repository!r} holds {offset} bytes; a chunk "
                f"must start at {offset}, not {start}", offset)
        running = self._service.running.pop(uuid, None)
        if running is not None and running.offset != offset:
            running = None
        if running is None and offset == 0:
            running = _Running(0)
        loop = asyncio.get_running_loop()
        writer: FileWriter | None = None  # opened with the first bytes (a PUT may have none)
        received = gathered = 0
        pieces: list[bytes] = []
        pending: asyncio.Future[None] | None = None  # the piece a thread is writing
        healthy = False
        try:
            async for chunk in body:
                pieces.append(chunk)
                gathered += len(chunk)
                if gathered >= CHUNK:
                    data, pieces, gathered = b"".join(pieces), [], 0
                    received += len(data)
                    if pending is not None:
                        await pending
                        pending = None
                    if writer is None:
                        writer = await run_blocking(self._writer)
                    pending = loop.run_in_executor(None, self._write, writer, data, running)
            if pending is not None:
                await pending
                pending = None
            if pieces:
                data = b"".join(pieces)
                received += len(data)
                if writer is None:
                    writer = await run_blocking(self._writer)
                await run_blocking(self._write, writer, data, running)
            healthy = True
        except StorageError:
            raise
        except BaseException:
            healthy = True  # the client went away: keep what arrived
            raise
        finally:
            if pending is not None:
                # Let the thread finish with the writer before it is paused or dropped.
                with contextlib.suppress(Exception):
                    await pending
            if healthy and writer is not None:
                await run_blocking(self._pause, writer, running)
            elif running is not None and writer is None:
                self._service.running[uuid] = running
            # A failed writer is dropped unpaused (the labels still name what the session
            # held), now rather than with the traceback that may keep this frame alive.
            writer = None
        if length is not None and received != length:
            raise SizeMismatch(
                f"upload {uuid} to {self.record.repository!r}: the request declared {length} "
                f"bytes but sent {received}", {"declared": length, "received": received})
        return self.offset

    @staticmethod
    def _write(writer: FileWriter, data: bytes, running: _Running | None) -> None:
        writer.write(data)
        if running is not None:
            running.hasher.update(data)
            running.offset += len(data)

    def _pause(self, writer: FileWriter, running: _Running | None) -> None:
        writer.close()
        labels = {**self.labels, **writer.state()}
        labels[SIZE] = str(writer.size)
        if running is not None and running.offset == writer.size:
            labels[DIGEST] = f"{RUNNING_HASH}:{running.hasher.hexdigest()}"
        else:
            labels.pop(DIGEST, None)
        if not self._service.metadata.update_upload(self.record.uuid, labels):
            # Cancelled meanwhile: drop what this request added (a multipart upload too).
            with contextlib.suppress(StorageError):
                writer.cancel()
            with contextlib.suppress(StorageError):
                self._service.driver.delete(upload_dir(self.record.uuid))
            raise self._service.ended(self.record)
        self.labels = labels
        if running is not None and running.offset == writer.size:
            self._service.running[self.record.uuid] = running

    async def commit(self, digest: Digest) -> int:
        """Verify the session's bytes against ``digest``, publish and link the blob, end the
        session; its size. ``DigestMismatch`` discards the bytes and ends the session."""
        self._check_open()
        self._ended = True
        running = self._service.running.pop(self.record.uuid, None)
        return await run_blocking(self._service.commit, self.record, self.labels, digest,
                                  running)

    async def cancel(self) -> None:
        """Discard the session's bytes and end it."""
        self._check_open()
        self._ended = True
        self._service.running.pop(self.record.uuid, None)
        await run_blocking(self._service.discard, self.record, self.labels)

    def _check_open(self) -> None:
        if self._ended:
            raise self._service.ended(self.record)


class UploadService:
    """Upload sessions of every repository over one driver (see the module docstring)."""

    def __init__(self, driver: StorageDriver, metadata: MetadataStore, *,
                 wait: float = 5.0,
                 guard: Callable[[], AbstractContextManager[None]] = nullcontext,
                 adopt: Adopter | None = None) -> None:
        self.driver = driver
        self.metadata = metadata
        self._guard = guard
        self._adopt = adopt
        self.running: dict[str, _Running] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._wait = wait

    @staticmethod
    def ended(record: UploadRecord) -> UploadUnknown:
        """The error for a session that has ended."""
        return UploadUnknown(f"upload {record.uuid} to {record.repository!r} has ended",
                             record.uuid)

    @staticmethod
    def busy(record: UploadRecord) -> UploadBusy:
        """The error for a session another request (of any process) is writing."""
        return UploadBusy(f"upload {record.uuid} to {record.repository!r} is busy in another "
                          "request; retry", record.uuid)

    async def start(self, repository: str) -> UploadRecord:
        """Open a new session for ``repository`` (nothing is written until bytes come)."""
        record = UploadRecord(uuid=str(uuidlib.uuid4()), repository=repository,
                              started_at=time.time())
        await run_blocking(self.metadata.start_upload, record)
        return record

    def record(self, repository: str, upload_id: str) -> UploadRecord:
        """The open session ``upload_id`` of ``repository``; ``UploadUnknown`` if none."""
        record = self.metadata.get_upload(upload_id)
        if record is None or record.repository != repository:
            raise UploadUnknown(f"upload {upload_id} is unknown to repository {repository!r}",
                                upload_id)
        if (self._adopt is not None and SIZE not in record.labels
                and COMMITTING not in record.labels):
            record = self._adopt(record)
        return record

    def offset(self, upload_id: str) -> int:
        """How many bytes a session holds (0 if unknown)."""
        record = self.metadata.get_upload(upload_id)
        return labels_offset(record.labels) if record is not None else 0

    async def status(self, repository: str, upload_id: str) -> int:
        """How many bytes the open session holds, after finishing a commit a crash
        interrupted (then: ``UploadUnknown``)."""
        record = await run_blocking(self.record, repository, upload_id)
        if COMMITTING in record.labels:
            await run_blocking(self.recover, record)
            raise self.ended(record)
        return labels_offset(record.labels)

    @contextlib.asynccontextmanager
    async def upload(self, repository: str, upload_id: str) -> AsyncIterator[UploadHandle]:
        """Hold session ``upload_id`` of ``repository`` for one request (``UploadBusy`` if
        another request of this process holds it longer than the wait time)."""
        lock = self._locks.setdefault(upload_id, asyncio.Lock())
        try:
            await asyncio.wait_for(lock.acquire(), self._wait)
        except TimeoutError:
            raise UploadBusy(f"upload {upload_id} to {repository!r} is busy in another "
                             "request; retry", upload_id) from None
        try:
            record = await run_blocking(self.record, repository, upload_id)
            if COMMITTING in record.labels:
                await run_blocking(self.recover, record)
                raise self.ended(record)
            yield UploadHandle(self, record)
        finally:
            lock.release()
            if not lock.locked():
                self._locks.pop(upload_id, None)

    async def cancel(self, repository: str, upload_id: str) -> None:
        """End a session and discard its bytes; ``UploadUnknown`` if none."""
        async with self.upload(repository, upload_id) as handle:
            await handle.cancel()

    # Blocking parts.

    def commit(self, record: UploadRecord, labels: Mapping[str, str], digest: Digest,
               running: _Running | None) -> int:
        """See :meth:`UploadHandle.commit`."""
        driver, path = self.driver, upload_path(record.uuid)
        try:
            writer = (driver.writer(path, append=True, state=labels) if SIZE in labels
                      else driver.writer(path))
            size = writer.size
            writer.commit()
        except PathBusy:
            raise self.busy(record) from None
        except PathNotFound:
            # A commit interrupted before its journal completed the content already (the
            # multipart upload and the pending bytes are gone): go on from the object.
            size = labels_offset(labels)
            try:
                if driver.stat(path).size != size:
                    raise PathNotFound(path)
            except PathNotFound:
                self.discard(record, {})
                raise self.ended(record) from None
            running = None
        if (running is not None and running.offset == size
                and digest.algorithm == RUNNING_HASH):
            actual = Digest(RUNNING_HASH, running.hasher.hexdigest())
        else:
            actual = recorded_digest(labels, size, digest.algorithm) or self._hash_back(
                path, digest.algorithm)
        if actual != digest:
            self.discard(record, {})
            raise DigestMismatch(
                f"upload {record.uuid} to {record.repository!r}: its {size} bytes hash to "
                f"{actual}, not {digest}; nothing was stored", str(digest))
        if not self.metadata.update_upload(record.uuid, {COMMITTING: str(digest),
                                                         SIZE: str(size)}):
            with contextlib.suppress(PathNotFound):
                driver.delete(upload_dir(record.uuid))
            raise self.ended(record)
        self._publish(record, digest, size)
        return size

    def _hash_back(self, path: str, algorithm: str) -> Digest:
        hasher = new_hasher(algorithm)
        reader = self.driver.reader(path)
        try:
            while chunk := reader.read(CHUNK):
                hasher.update(chunk)
        finally:
            reader.close()
        return Digest(algorithm, hasher.hexdigest())

    def _publish(self, record: UploadRecord, digest: Digest, size: int) -> None:
        """Move verified bytes into place (unless the blob is there already), link the
        blob, end the session."""
        target = blob_path(digest)
        with self._guard():
            try:
                exists = self.driver.stat(target).size == size
            except PathNotFound:
                exists = False
            if not exists:
                self.driver.move(upload_path(record.uuid), target)
            self.metadata.link_blob(record.repository, digest, size)
        self.metadata.end_upload(record.uuid)
        with contextlib.suppress(PathNotFound):
            self.driver.delete(upload_dir(record.uuid))

    def recover(self, record: UploadRecord) -> None:
        """Finish a commit whose journal (``committing``) a crash left behind: publish the
        verified bytes if they are still there, else end the session."""
        try:
            digest = Digest.parse(record.labels[COMMITTING])
            size = labels_offset(record.labels)
        except (KeyError, ValueError, Exception):
            self.metadata.end_upload(record.uuid)
            return
        try:
            self._publish(record, digest, size)
        except PathNotFound:
            try:
                info = self.driver.stat(blob_path(digest))
                self.metadata.link_blob(record.repository, digest, info.size)
            except PathNotFound:
                pass
            self.metadata.end_upload(record.uuid)

    def discard(self, record: UploadRecord, labels: Mapping[str, str]) -> None:
        """Drop a session's bytes (multipart upload, pending bytes, upload object) and end
        it."""
        if SIZE in labels:
            try:
                self.driver.writer(upload_path(record.uuid), append=True,
                                   state=labels).cancel()
            except (PathNotFound, InvalidOffset):
                pass
            except PathBusy:
                raise self.busy(record) from None
            except BackendUnavailable:
                self.metadata.end_upload(record.uuid)
                raise
        with contextlib.suppress(PathNotFound):
            self.driver.delete(upload_dir(record.uuid))
        self.metadata.end_upload(record.uuid)
