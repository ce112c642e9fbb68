"""Downloading one blob into a content store: streamed, verified, resumable.

The bytes go into an ingest named after the digest; a broken connection resumes with a
``Range`` request from what the ingest holds. The blob becomes visible in the store only
once its size and digest are verified; on a mismatch the ingest is discarded and nothing is
kept.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

import httpx

from layerstore.content.store import ContentStore, ContentWriter
from layerstore.digest import CHUNK
from layerstore.errors import DigestMismatch as StoreDigestMismatch
from layerstore.errors import SizeMismatch, Unavailable
from layerstore.oci import Descriptor
from registry.client.auth import repository_scope
from registry.client.errors import ClientError, DigestMismatch
from registry.client.progress import (
    DOWNLOADED,
    DOWNLOADING,
    EXISTS,
    BlobProgress,
    ProgressCallback,
    report,
)
from registry.client.transport import Transport


class Cancelled(ClientError):
    """The transfer was stopped because another one of the same operation failed."""


def _open_writer(store: ContentStore, desc: Descriptor) -> ContentWriter:
    try:
        writer = store.writer(f"pull-{desc.digest}", total=desc.size, expected=desc.digest)
    except Unavailable:
        return store.writer(f"pull-{desc.digest}-{uuid.uuid4().hex[:8]}", total=desc.size,
                            expected=desc.digest)
    if writer.offset > desc.size:
        writer.abort()
        return store.writer(f"pull-{desc.digest}", total=desc.size, expected=desc.digest)
    return writer


def _mismatch(transport: Transport, repository: str, desc: Descriptor, detail: str
              ) -> DigestMismatch:
    return DigestMismatch(f"blob {desc.digest} of {repository} from registry "
                          f"{transport.registry} does not match its descriptor ({detail}); "
                          "nothing was stored", registry=transport.registry,
                          digest=str(desc.digest), repository=repository)


class _Download:
    """One blob on its way into the store; ``writer`` is the ingest being filled."""

    def __init__(self, transport: Transport, repository: str, desc: Descriptor,
                 store: ContentStore, progress: ProgressCallback | None,
                 cancel: threading.Event | None) -> None:
        self.transport = transport
        self.repository = repository
        self.desc = desc
        self.store = store
        self.progress = progress
        self.cancel = cancel
        self.writer = _open_writer(store, desc)

    def mismatch(self, detail: str) -> DigestMismatch:
        """The error for content that does not match the descriptor."""
        return _mismatch(self.transport, self.repository, self.desc, detail)

    def run(self) -> None:
        """Fill, verify and commit the ingest; on failure discard it (mismatch) or keep it
        for a later resume (anything else)."""
        desc = self.desc
        try:
            self.fill()
            try:
                self.writer.commit(desc.size, desc.digest)
            except (StoreDigestMismatch, SizeMismatch) as exc:
                raise self.mismatch(str(exc)) from None
        except DigestMismatch:
            self.writer.abort()
            raise
        except BaseException:
            self.writer.close()
            raise

    def fill(self) -> None:
        """Stream the blob until the ingest holds ``desc.size`` bytes, resuming after
        broken connections within the retry policy."""
        transport, desc = self.transport, self.desc
        policy = transport.settings.retry
        deadline = time.monotonic() + policy.total
        failures = 0
        path = f"/v2/{self.repository}/blobs/{desc.digest}"
        what = f"blob {desc.digest} of {self.repository}"
        while self.writer.offset < desc.size:
            self.check_cancel()
            offset = self.writer.offset
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            response = transport.request("GET", path, what=what,
                                         scopes=(repository_scope(self.repository, "pull"),),
                                         headers=headers, ok=(200, 206), stream=True)
            try:
                with contextlib.closing(response):
                    if offset and response.status_code == 200:
                        # The registry ignored the Range request: the ingest starts over.
                        self.writer.abort()
                        self.writer = _open_writer(self.store, desc)
                    self.copy(response)
                if self.writer.offset < desc.size:
                    raise self.mismatch(f"the registry sent only {self.writer.offset} of "
                                        f"{desc.size} bytes")
            except httpx.TransportError as exc:
                failures += 1
                delay = policy.delay(failures)
                if failures >= policy.attempts or time.monotonic() + delay > deadline:
                    raise transport.unreachable(exc, str(response.url), failures) from None
                time.sleep(delay)

    def check_cancel(self) -> None:
        """Stop when another transfer of the same operation failed."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(f"download of blob {self.desc.digest} stopped")

    def copy(self, response: httpx.Response) -> None:
        """Append the response body to the ingest."""
        desc, writer = self.desc, self.writer
        for chunk in response.iter_bytes(CHUNK):
            self.check_cancel()
            if writer.offset + len(chunk) > desc.size:
                raise self.mismatch(f"the registry sent more than {desc.size} bytes")
            writer.write(chunk)
            report(self.progress, BlobProgress(desc.digest, desc.media_type, writer.offset,
                                               desc.size, DOWNLOADING))


def download_blob(transport: Transport, repository: str, desc: Descriptor,
                  store: ContentStore, *, progress: ProgressCallback | None = None,
                  cancel: threading.Event | None = None) -> bool:
    """Fetch ``desc`` from ``repository`` into ``store`` unless it is there already;
    whether bytes were downloaded. DigestMismatch (nothing stored) when the content does
    not match ``desc``; Unreachable when the registry stays away."""
    if store.exists(desc.digest):
        report(progress, BlobProgress(desc.digest, desc.media_type, desc.size, desc.size,
                                      EXISTS))
        return False
    _Download(transport, repository, desc, store, progress, cancel).run()
    report(progress, BlobProgress(desc.digest, desc.media_type, desc.size, desc.size,
                                  DOWNLOADED))
    return True


__all__ = ["Cancelled", "download_blob"]
