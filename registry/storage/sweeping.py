"""Blob storage on a driver as garbage collection (:mod:`registry.gc`) sees a content
store: committed blobs to list, stat and delete, and upload sessions' leftovers to abort.
"""

from __future__ import annotations

from collections.abc import Iterator

from layerstore.content.store import Info, IngestStatus
from layerstore.digest import Digest
from layerstore.errors import LayerstoreError, NotFound
from registry.metadata.store import MetadataStore
from registry.storage.driver import StorageDriver
from registry.storage.errors import PathNotFound
from registry.storage.paths import blob_path, upload_dir, upload_path
from registry.storage.uploads import SIZE

UPLOAD_REF_PREFIX = "upload-"


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
