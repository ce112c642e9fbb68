"""Blob storage on a driver as garbage collection (:mod:`registry.gc`) sees a content
store: committed blobs to list, stat and delete, and upload sessions' leftovers to abort.

:class:`DriverContent` works on any driver; :class:`FilesystemContent` is a filesystem root
(``root/content``): it leaves alone an upload a request is writing right now (its file is
``flock``-ed while a writer holds it) and sweeps the upload ingests of the layerstore content
store that earlier releases kept there (``ingest/``, see :mod:`registry.storage.legacy`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from layerstore.content.local import LocalStore
from layerstore.content.store import Info, IngestStatus
from layerstore.digest import Digest
from layerstore.errors import LayerstoreError, NotFound, Unavailable
from registry.metadata.store import MetadataStore
from registry.storage.driver import StorageDriver
from registry.storage.errors import InvalidPath, PathNotFound
from registry.storage.filesystem import FilesystemDriver
from registry.storage.paths import blob_path, upload_dir, upload_path
from registry.storage.uploads import SIZE

UPLOAD_REF_PREFIX = "upload-"
INGEST_DIR = "ingest"


class Sweepable(Protocol):
    """What :func:`registry.gc.collect` needs of a content store: a local
    :class:`~layerstore.content.store.ContentStore` or a :class:`DriverContent`."""

    def walk(self) -> Iterator[Info]:
        """Every committed blob."""
        ...

    def info(self, digest: Digest) -> Info:
        """A committed blob; ``NotFound``."""
        ...

    def exists(self, digest: Digest) -> bool:
        """Whether a blob is stored."""
        ...

    def delete(self, digest: Digest) -> None:
        """Delete a blob's bytes; ``NotFound``."""
        ...

    def list_statuses(self) -> list[IngestStatus]:
        """The stored bytes of unfinished uploads."""
        ...

    def abort(self, ref: str) -> None:
        """Drop an unfinished upload's bytes; ``NotFound``."""
        ...


class DriverContent:
    """What :func:`registry.gc.collect` needs of a content store, over a driver."""

    def __init__(self, driver: StorageDriver, metadata: MetadataStore) -> None:
        self.driver = driver
        self.metadata = metadata

    def walk(self) -> Iterator[Info]:
        """Every committed blob."""
        try:
            listing = list(self.driver.walk("blobs"))
        except PathNotFound:
            return
        for info in listing:
            parts = info.path.split("/")
            if len(parts) != 3:
                continue
            try:
                digest = Digest(parts[1], parts[2])
            except LayerstoreError:
                continue
            yield Info(digest, info.size, info.modified)

    def info(self, digest: Digest) -> Info:
        """A committed blob; ``NotFound``."""
        try:
            found = self.driver.stat(blob_path(digest))
        except PathNotFound:
            raise NotFound(f"blob {digest} is not stored") from None
        return Info(digest, found.size, found.modified)

    def exists(self, digest: Digest) -> bool:
        """Whether a blob is stored."""
        try:
            self.driver.stat(blob_path(digest))
        except PathNotFound:
            return False
        return True

    def delete(self, digest: Digest) -> None:
        """Delete a blob's bytes; ``NotFound``."""
        try:
            self.driver.delete(blob_path(digest))
        except PathNotFound:
            raise NotFound(f"blob {digest} is not stored") from None

    def list_statuses(self) -> list[IngestStatus]:
        """The upload sessions' stored bytes (``upload-<uuid>``), dated by their last write."""
        try:
            sessions = self.driver.list("uploads")
        except PathNotFound:
            return []
        out: list[IngestStatus] = []
        for session in sessions:
            uuid = session.rsplit("/", 1)[-1]
            try:
                info = self.driver.stat(upload_path(uuid))
            except PathNotFound:
                continue
            out.append(IngestStatus(UPLOAD_REF_PREFIX + uuid, info.size, None, None,
                                    info.modified, info.modified))
        return out

    def abort(self, ref: str) -> None:
        """Drop an upload session's bytes (its multipart upload too); ``NotFound``."""
        uuid = ref.removeprefix(UPLOAD_REF_PREFIX)
        found = False
        record = self.metadata.get_upload(uuid)
        if record is not None and SIZE in record.labels:
            try:
                self.driver.writer(upload_path(uuid), append=True,
                                   state=record.labels).cancel()
                found = True
            except PathNotFound:
                pass
        try:
            self.driver.delete(upload_dir(uuid))
            found = True
        except PathNotFound:
            pass
        if not found:
            raise NotFound(f"no stored bytes for upload {uuid}")


@contextlib.contextmanager
def _unheld(path: Path, upload_id: str) -> Iterator[None]:
    """Hold the writers' lock of an upload's file (if it has one) for the block;
    ``Unavailable`` while a writer holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Unavailable(f"upload {upload_id} is being written right now") from None
        yield
    finally:
        os.close(fd)


class FilesystemContent(DriverContent):
    """A filesystem root as garbage collection sweeps it (see the module docstring)."""

    def __init__(self, driver: FilesystemDriver, metadata: MetadataStore) -> None:
        super().__init__(driver, metadata)
        self._files = driver
        content = driver.root
        self._ingests = LocalStore(content) if (content / INGEST_DIR).is_dir() else None

    def list_statuses(self) -> list[IngestStatus]:
        """The stored bytes of unfinished uploads, in either layout."""
        statuses = super().list_statuses()
        if self._ingests is not None:
            statuses += [status for status in self._ingests.list_statuses()
                         if status.ref.startswith(UPLOAD_REF_PREFIX)]
        return statuses

    def abort(self, ref: str) -> None:
        """Drop an unfinished upload's bytes, in either layout; ``NotFound``, or
        ``Unavailable`` while a request writes them."""
        upload_id = ref.removeprefix(UPLOAD_REF_PREFIX)
        found = False
        try:
            data = self._files.local_path(upload_path(upload_id))
        except InvalidPath:
            data = None
        if data is not None:
            with _unheld(data, upload_id), contextlib.suppress(PathNotFound):
                self.driver.delete(upload_dir(upload_id))
                found = True
        if self._ingests is not None:
            with contextlib.suppress(NotFound):
                self._ingests.abort(ref)
                found = True
        if not found:
            raise NotFound(f"no stored bytes for upload {upload_id}")
