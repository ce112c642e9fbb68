"""Pushing one blob: HEAD first, then a cross-repository mount, then an upload.

Blobs up to ``settings.monolithic_max`` bytes go in one ``PUT`` to a fresh session; larger
ones in ``PATCH`` chunks of ``settings.chunk_size`` bytes with ``Content-Range``, each
acknowledged with the session's ``Range``. After a broken connection or a 5xx the client
asks the session where it stands (``GET`` on its ``Location``) and goes on from there; a
session the registry forgot starts over. Bytes are read from the content store as they are
sent, never held whole in memory.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import httpx

from layerstore.content.store import ContentStore
from layerstore.digest import CHUNK
from layerstore.oci import Descriptor
from registry.client.download import Cancelled
from registry.client.errors import ClientError, NotFound, ProtocolError, Unreachable
from registry.client.progress import (
    EXISTS,
    MOUNTED,
    PUSHED,
    UPLOADING,
    BlobProgress,
    ProgressCallback,
    report,
)
from registry.client.transport import RETRY_STATUSES, Body, Transport

OCTET_STREAM = "application/octet-stream"
_RANGE_RE = re.compile(r"^(?:bytes[= ])?\s*\d+-(\d+)")


class _Retry(Exception):
    """An upload step failed in a way a new attempt may fix."""


def upload_range_end(response: httpx.Response, sent_to: int) -> int:
    """The offset a session is at after a response: one past the end of its ``Range``
    header (``sent_to`` when the registry sent none)."""
    match = _RANGE_RE.match(response.headers.get("range", ""))
    if match is None:
        return sent_to
    end = int(match.group(1))
    if end == 0:
        # "0-0" is what registries say for an empty session as well as for one byte.
        return 1 if sent_to == 1 else 0
    return end + 1


class BlobUpload:
    """Pushing one blob into one repository (see the module docstring)."""

    def __init__(self, transport: Transport, repository: str, desc: Descriptor,
                 store: ContentStore, *, scopes: Sequence[str], mount_from: Sequence[str] = (),
                 progress: ProgressCallback | None = None,
                 cancel: threading.Event | None = None) -> None:
        self.transport = transport
        self.repository = repository
        self.desc = desc
        self.store = store
        self.scopes = tuple(scopes)
        self.mount_from = tuple(r for r in mount_from if r != repository)
        self.progress = progress
        self.cancel = cancel
        self.what = f"blob {desc.digest} of {repository}"
        self.failures = 0
        self.deadline = time.monotonic() + transport.settings.retry.total

    # -- small steps --------------------------------------------------------------------------

    def _report(self, done: int, state: str) -> None:
        report(self.progress, BlobProgress(self.desc.digest, self.desc.media_type, done,
                                           self.desc.size, state))

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(f"upload of {self.what} stopped")

    def _request(self, method: str, path: str, *, ok: Sequence[int], retry: bool = True,
                 params: Mapping[str, str] | None = None,
                 headers: Mapping[str, str] | None = None,
                 body: Body | None = None) -> httpx.Response:
        return self.transport.request(method, path, what=self.what, scopes=self.scopes,
                                      params=params, headers=headers, body=body,
                                      ok=ok, retry=retry)

    def exists(self) -> bool:
        """HEAD the blob in the repository."""
        response = self._request("HEAD", f"/v2/{self.repository}/blobs/{self.desc.digest}",
                                 ok=(200, 404))
        return response.status_code == 200

    def _failed(self, exc: BaseException | None, url: str) -> None:
        """Count a failed step; sleep before the next try or raise when out of budget."""
        policy = self.transport.settings.retry
        self.failures += 1
        delay = policy.delay(self.failures)
        if self.failures >= policy.attempts or time.monotonic() + delay > self.deadline:
            if isinstance(exc, httpx.TransportError):
                raise self.transport.unreachable(exc, url, self.failures) from None
            if isinstance(exc, ClientError):
                raise exc
            raise ProtocolError(f"registry {self.transport.registry} kept failing the upload "
                                f"of {self.what}", registry=self.transport.registry)
        time.sleep(delay)

    def _body(self, start: int, length: int) -> Callable[[], Iterator[bytes]]:
        def chunks() -> Iterator[bytes]:
            with self.store.reader(self.desc.digest, start) as f:
                sent = 0
                while sent < length:
                    self._check_cancel()
                    chunk = f.read(min(CHUNK, length - sent))
                    if not chunk:
                        raise ClientError(f"local blob {self.desc.digest} is shorter than "
                                          f"its descriptor says ({self.desc.size} bytes)")
                    sent += len(chunk)
                    yield chunk
                    self._report(start + sent, UPLOADING)
        return chunks

    def _start_session(self) -> str:
        response = self._request("POST", f"/v2/{self.repository}/blobs/uploads/", ok=(202,))
        return self._location(response)

    def _location(self, response: httpx.Response) -> str:
        location = response.headers.get("location")
        if not location:
            raise ProtocolError(f"registry {self.transport.registry} opened an upload session "
                                f"for {self.what} without a Location header",
                                registry=self.transport.registry)
        return str(response.url.join(location))

    def _cancel_session(self, location: str) -> None:
        with contextlib.suppress(ClientError, httpx.HTTPError):
            self._request("DELETE", location, ok=(200, 202, 204, 404), retry=False)

    # -- mount ------------------------------------------------------------------------------------

    def mount(self) -> tuple[bool, str | None]:
        """Try each ``mount_from`` repository; ``(True, None)`` once mounted, else
        ``(False, location)`` with the upload session the last attempt opened."""
        location: str | None = None
        for source in self.mount_from:
            if location is not None:
                self._cancel_session(location)
            response = self._request(
                "POST", f"/v2/{self.repository}/blobs/uploads/", ok=(201, 202),
                params={"mount": str(self.desc.digest), "from": source})
            if response.status_code == 201:
                return True, None
            location = self._location(response)
        return False, location

    # -- upload ---------------------------------------------------------------------------------

    def run(self) -> str:
        """Make the blob present in the repository; the final progress state
        (``exists``, ``mounted`` or ``pushed``)."""
        self._check_cancel()
        if self.exists():
            self._report(self.desc.size, EXISTS)
            return EXISTS
        mounted, location = self.mount()
        if mounted:
            self._report(self.desc.size, MOUNTED)
            return MOUNTED
        if not self.store.exists(self.desc.digest):
            if location is not None:
                self._cancel_session(location)
            raise NotFound(f"blob {self.desc.digest} is neither in the local content store nor "
                           f"in {self.repository} on registry {self.transport.registry}",
                           registry=self.transport.registry)
        while True:
            self._check_cancel()
            try:
                if self.desc.size <= self.transport.settings.monolithic_max:
                    self._monolithic(location)
                else:
                    self._chunked(location)
                break
            except _Retry as exc:
                location = None
                cause = exc.__cause__
                self._failed(cause, self.what)
                if self.exists():
                    break
        self._report(self.desc.size, PUSHED)
        return PUSHED

    def _finish_params(self) -> dict[str, str]:
        return {"digest": str(self.desc.digest)}

    def _monolithic(self, location: str | None) -> None:
        try:
            location = location or self._start_session()
            self._request("PUT", location, ok=(201, 204), retry=False,
                          params=self._finish_params(),
                          headers={"Content-Type": OCTET_STREAM,
                                   "Content-Length": str(self.desc.size)},
                          body=self._body(0, self.desc.size))
        except ClientError as exc:
            if _retryable(exc):
                raise _Retry() from exc
            raise

    def _status(self, location: str) -> tuple[str, int] | None:
        """Where a session stands: its location and offset; ``None`` if it is gone."""
        response = self._request("GET", location, ok=(204, 200, 404))
        if response.status_code == 404:
            return None
        if response.headers.get("location"):
            location = self._location(response)
        return location, upload_range_end(response, 0)

    def _chunked(self, location: str | None) -> None:
        size, step = self.desc.size, self.transport.settings.chunk_size
        location = location or self._start_session()
        offset = 0
        while offset < size:
            self._check_cancel()
            length = min(step, size - offset)
            try:
                response = self._request(
                    "PATCH", location, ok=(202, 204), retry=False,
                    headers={"Content-Type": OCTET_STREAM, "Content-Length": str(length),
                             "Content-Range": f"{offset}-{offset + length - 1}"},
                    body=self._body(offset, length))
                location = self._location(response) if response.headers.get(
                    "location") else location
                offset = upload_range_end(response, offset + length)
            except (ClientError, httpx.TransportError) as exc:
                if not _retryable(exc):
                    raise
                self._failed(exc, location)
                status = self._status(location)
                if status is None:
                    location, offset = self._start_session(), 0
                else:
                    location, offset = status
        try:
            self._request("PUT", location, ok=(201, 204), params=self._finish_params(),
                          headers={"Content-Length": "0"})
        except ClientError as exc:
            if _retryable(exc):
                raise _Retry() from exc
            raise


def _retryable(exc: BaseException) -> bool:
    """Whether an upload step may succeed when tried again (the registry was away or
    overloaded, or lost track of the session)."""
    if isinstance(exc, httpx.TransportError | Unreachable):
        return True
    if isinstance(exc, ProtocolError):
        return exc.status in RETRY_STATUSES or exc.status == 416 or exc.code in (
            "BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID")
    return isinstance(exc, NotFound) and "BLOB_UPLOAD_UNKNOWN" in str(exc)


def upload_blob(transport: Transport, repository: str, desc: Descriptor,
                store: ContentStore, *, scopes: Sequence[str], mount_from: Sequence[str] = (),
                progress: ProgressCallback | None = None,
                cancel: threading.Event | None = None) -> str:
    """Make ``desc`` (read from ``store``) present in ``repository``; the final progress
    state: ``exists``, ``mounted`` or ``pushed``."""
    return BlobUpload(transport, repository, desc, store, scopes=scopes,
                      mount_from=mount_from, progress=progress, cancel=cancel).run()


__all__ = ["BlobUpload", "upload_blob", "upload_range_end"]
