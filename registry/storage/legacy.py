"""What a filesystem registry root written by earlier releases holds beyond the driver
layout, and how the blob and upload services and garbage collection take it over.

Blobs need nothing: the layerstore content store that earlier releases wrote into
``root/content`` keeps them at ``blobs/<alg>/<hex>`` too. Upload sessions differ: their
bytes were the content store's ingest ``upload-<uuid>`` (``content/ingest/<sha256 of the
ref>/`` holding ``data``, ``meta.json`` and ``lock``), the file itself was the session's state
(its labels in the metadata stayed empty), and a commit first wrote the digest it was about
to publish to ``root/commits/<uuid>``.

:meth:`LegacyUploads.adopt` runs when a session without driver state is first used:

- a commit journal whose blob was published (the ingest is empty or gone) finishes that
  commit: the blob is linked and the session ends, so the client learns it is done
  (``UploadUnknown``, as after any completed upload);
- otherwise the ingest's ``data`` moves to ``uploads/<uuid>/data``, its size goes into the
  labels and the rest of the ingest is removed: the session resumes where the client left it.

:class:`~registry.storage.sweeping.FilesystemContent` shows garbage collection the upload
ingests an earlier release left.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path

from layerstore.digest import Digest
from layerstore.errors import LayerstoreError
from registry.metadata.store import MetadataStore, UploadRecord
from registry.storage.driver import StorageDriver
from registry.storage.errors import PathNotFound, UploadUnknown
from registry.storage.paths import blob_path, upload_dir, upload_path
from registry.storage.sweeping import INGEST_DIR, UPLOAD_REF_PREFIX
from registry.storage.uploads import SIZE

COMMITS_DIR = "commits"


def ingest_dir(upload_id: str) -> str:
    """The driver path of the ingest an earlier release kept an upload session's bytes in."""
    ref = UPLOAD_REF_PREFIX + upload_id
    return f"{INGEST_DIR}/{hashlib.sha256(ref.encode()).hexdigest()}"


class LegacyUploads:
    """Takes over the upload sessions of an earlier release (see the module docstring).

    ``driver`` is the filesystem driver over ``root/content``; ``guard`` keeps garbage
    collection's sweep out while a blob is linked."""

    def __init__(self, driver: StorageDriver, metadata: MetadataStore, root: Path,
                 guard: Callable[[], AbstractContextManager[None]]) -> None:
        self.driver = driver
        self.metadata = metadata
        self._commits = root / COMMITS_DIR
        self._guard = guard

    def adopt(self, record: UploadRecord) -> UploadRecord:
        """``record`` with its bytes moved into the driver layout (unchanged when there
        were none); ``UploadUnknown`` when an interrupted commit of it was finished."""
        data = f"{ingest_dir(record.uuid)}/data"
        try:
            held: int | None = self.driver.stat(data).size
        except PathNotFound:
            held = None
        journal = self._commits / record.uuid
        if journal.exists() and self._finish_commit(record, journal, held):
            raise UploadUnknown(f"upload {record.uuid} to {record.repository!r} has ended",
                                record.uuid)
        if held is None:
            return record
        self.driver.move(data, upload_path(record.uuid))
        labels = {**record.labels, SIZE: str(held)}
        if not self.metadata.update_upload(record.uuid, labels):
            with contextlib.suppress(PathNotFound):
                self.driver.delete(upload_dir(record.uuid))
            raise UploadUnknown(f"upload {record.uuid} to {record.repository!r} has ended",
                                record.uuid)
        with contextlib.suppress(PathNotFound):
            self.driver.delete(ingest_dir(record.uuid))
        return replace(record, labels=labels)

    def _finish_commit(self, record: UploadRecord, journal: Path, held: int | None) -> bool:
        """Link the blob a journal names and end the session if the commit got as far as
        publishing it; whether it did. A stale journal is removed."""
        try:
            digest = Digest.parse(journal.read_text().strip())
        except (OSError, ValueError, LayerstoreError):
            digest = None
        size: int | None = None
        if digest is not None and not held:
            with contextlib.suppress(PathNotFound):
                size = self.driver.stat(blob_path(digest)).size
        if digest is None or size is None:
            journal.unlink(missing_ok=True)
            return False
        with self._guard():
            self.metadata.link_blob(record.repository, digest, size)
        with contextlib.suppress(PathNotFound):
            self.driver.delete(ingest_dir(record.uuid))
        self.metadata.end_upload(record.uuid)
        journal.unlink(missing_ok=True)
        return True
