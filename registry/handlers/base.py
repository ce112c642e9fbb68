"""What every handler shares: the services, the request context, the grammar of ``/v2/``
paths, request-body readers and lean response builders."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from layerstore.digest import CHUNK
from registry.auth.access import Authorizer, Identity
from registry.config import Settings
from registry.errors import (
    BLOB_UPLOAD_INVALID,
    JSON_TYPE,
    PAGINATION_NUMBER_INVALID,
    RegistryError,
    error_response,
    from_storage_error,
)
from registry.metadata.reads import HotReads
from registry.metadata.store import MetadataStore
from registry.metrics import Metrics
from registry.storage.blobs import BlobService
from registry.storage.driver import Reader
from registry.storage.errors import StorageError
from registry.storage.manifests import ManifestService
from registry.tagpolicy.service import TagPolicyService

if TYPE_CHECKING:
    from registry.projects.policy import ProjectRoles
    from registry.projects.quota import QuotaGuard
    from registry.proxy.service import ProxyService

OCTET_STREAM = "application/octet-stream"
MAX_PAGE = 1000
ROUTE_KEY = "registry.route"


@dataclass(frozen=True)
class Services:
    """The long-lived objects a server process shares between requests."""

    settings: Settings
    metadata: MetadataStore
    blobs: BlobService
    manifests: ManifestService
    authorizer: Authorizer
    metrics: Metrics
    reads: HotReads
    projects: ProjectRoles | None = None
    quota: QuotaGuard | None = None
    tag_policy: TagPolicyService | None = None
    proxy: ProxyService | None = None


@dataclass(frozen=True, slots=True)
class Context:
    """One request as a handler sees it: ``name`` is the validated repository (``""`` for
    registry-wide routes); ``arg`` is the last path element (reference, digest or upload id)."""

    request: Request
    services: Services
    name: str
    arg: str
    identity: Identity


Handler = Callable[[Context], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    """A handler with the repository actions it needs and whether it changes anything."""

    handler: Handler
    actions: tuple[str, ...] = ()
    writes: bool = False


@dataclass(frozen=True, slots=True)
class Match:
    """A ``/v2/`` path taken apart: the route kind, the repository and the last element."""

    route: str
    name: str = ""
    arg: str = ""


def match_v2(rest: str) -> Match | None:
    """Take apart the path after ``/v2/``; ``None`` if it names no endpoint.

    The repository name may contain ``/``, so the path is read from its end.
    """
    if rest == "":
        return Match("base")
    if rest == "_catalog":
        return Match("catalog")
    if rest.endswith("/tags/list"):
        name = rest[:-10]
        return Match("tags", name) if name else None
    head, sep, last = rest.rpartition("/")
    if not sep:
        return None
    name, sep, kind = head.rpartition("/")
    if not sep or not name:
        return None
    if kind == "manifests" and last:
        return Match("manifests", name, last)
    if kind == "blobs" and last:
        if last == "uploads":
            return Match("upload_start", name)
        return Match("blobs", name, last)
    if kind == "uploads" and name.endswith("/blobs") and len(name) > 6:
        name = name[:-6]
        if last == "":
            return Match("upload_start", name)
        return Match("uploads", name, last)
    if kind == "referrers" and last:
        return Match("referrers", name, last)
    return None


# Responses.


class RawResponse(Response):
    """A response whose headers are given as they go on the wire (no re-encoding)."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]],
                 body: bytes = b"") -> None:
        self.status_code = status
        self.raw_headers = headers
        self.body = body
        self.background = None


def respond(status: int, headers: Mapping[str, str] | None = None, body: bytes = b"",
            content_type: str | None = None) -> RawResponse:
    """A response with ``Content-Length`` set from ``body`` (none on a 204)."""
    raw = [] if status == 204 else [(b"content-length", str(len(body)).encode())]
    if content_type is not None:
        raw.append((b"content-type", content_type.encode("latin-1")))
    if headers:
        raw.extend((k.lower().encode("latin-1"), v.encode("latin-1"))
                   for k, v in headers.items())
    return RawResponse(status, raw, body)


def json_bytes(doc: Any) -> bytes:
    """Compact JSON."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(doc: Any, status: int = 200, headers: Mapping[str, str] | None = None,
                  content_type: str = JSON_TYPE) -> RawResponse:
    """A JSON document response."""
    return respond(status, headers, json_bytes(doc), content_type)


class FileRangeResponse(Response):
    """Stream ``length`` bytes of an open file from its current position, 1 MiB at a time
    read in a worker thread; stops early if the client goes away. Closes the file."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], file: BinaryIO,
                 length: int) -> None:
        self.status_code = status
        self.raw_headers = headers
        self.background = None
        self._file = file
        self._length = length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        fd = self._file.fileno()
        offset = self._file.tell()
        remaining = self._length
        watcher: asyncio.Future[None] | None = None
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            if remaining > CHUNK:
                watcher = asyncio.ensure_future(_until_disconnect(receive))
            while remaining > 0:
                if watcher is not None and watcher.done():
                    return
                chunk = await loop.run_in_executor(None, os.pread, fd,
                                                   min(CHUNK, remaining), offset)
                if not chunk:
                    raise OSError(f"{self._file.name}: file ended {remaining} bytes early")
                offset += len(chunk)
                remaining -= len(chunk)
                await send({"type": "http.response.body", "body": chunk,
                            "more_body": remaining > 0})
            if self._length == 0:
                await send({"type": "http.response.body", "body": b""})
        finally:
            if watcher is not None:
                watcher.cancel()
            self._file.close()


class ReaderResponse(Response):
    """Stream ``length`` bytes of a storage reader (an S3 object body), 1 MiB at a time
    read in a worker thread; stops early if the client goes away. Closes the reader.

    The status line is sent only once the first piece is read, so a backend that fails at
    once still gets a proper error answer."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], reader: Reader,
                 length: int) -> None:
        self.status_code = status
        self.raw_headers = headers
        self.background = None
        self._reader = reader
        self._length = length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        remaining = self._length
        watcher: asyncio.Future[None] | None = None
        started = False
        try:
            first = b""
            if remaining > 0:
                first = await loop.run_in_executor(None, self._reader.read,
                                                   min(CHUNK, remaining))
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            started = True
            if remaining > len(first):
                watcher = asyncio.ensure_future(_until_disconnect(receive))
            chunk = first
            while True:
                if remaining > 0 and not chunk:
                    raise OSError(f"stored blob ended {remaining} bytes early")
                remaining -= len(chunk)
                await send({"type": "http.response.body", "body": chunk,
                            "more_body": remaining > 0})
                if remaining <= 0 or (watcher is not None and watcher.done()):
                    return
                chunk = await loop.run_in_executor(None, self._reader.read,
                                                   min(CHUNK, remaining))
        except StorageError as err:
            if started:
                raise OSError(f"storage failed while sending a blob: {err}") from None
            await error_response(from_storage_error(err))(scope, receive, send)
        finally:
            if watcher is not None:
                watcher.cancel()
            await loop.run_in_executor(None, self._reader.close)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


# Requests.

_HOST = re.compile(r"[A-Za-z0-9.\-_]+(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?")


def _first(value: str | None) -> str:
    return (value or "").split(",", 1)[0].strip()


def absolute_url(request: Request, path: str) -> str:
    """``path`` as an absolute URL of this registry as the client reached it (through a
    proxy: ``X-Forwarded-Proto``/``X-Forwarded-Host``); a malformed host is ignored."""
    headers = request.headers
    scheme = _first(headers.get("x-forwarded-proto")).lower()
    if scheme not in ("http", "https"):
        scheme = request.scope.get("scheme", "http")
    host = _first(headers.get("x-forwarded-host")) or _first(headers.get("host"))
    if not _HOST.fullmatch(host):
        server = request.scope.get("server") or ("127.0.0.1", 80)
        host = f"[{server[0]}]:{server[1]}" if ":" in server[0] else f"{server[0]}:{server[1]}"
    return f"{scheme}://{host}{path}"



async def _next_chunk(receive: Receive) -> tuple[bytes, bool]:
    """The next piece of the request body and whether more follows; BLOB_UPLOAD_INVALID if
    the client goes away."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise RegistryError(BLOB_UPLOAD_INVALID,
                            "the client closed the connection before the body ended")
    return message.get("body", b""), bool(message.get("more_body", False))


async def body_chunks(request: Request) -> AsyncIterator[bytes]:
    """The request body as it arrives; BLOB_UPLOAD_INVALID if the client goes away."""
    more = True
    while more:
        body, more = await _next_chunk(request.receive)
        if body:
            yield body


# A refused request's body is read and dropped up to this many bytes before the answer:
# closing a connection with unread bytes makes the kernel reset it, and the reset can
# destroy the answer before the client (or a proxy in front) reads it.
DRAIN_BYTES = 16 * 1024 * 1024


async def discard_body(request: Request, seen: int = 0) -> None:
    """Read and drop the rest of a request body of which ``seen`` bytes were read (none of
    it must have been the last piece), unless it is announced or turns out to be larger than
    :data:`DRAIN_BYTES`."""
    declared = content_length(request)
    if declared is not None and declared > DRAIN_BYTES:
        return
    more = True
    with contextlib.suppress(RegistryError):
        while more and seen <= DRAIN_BYTES:
            body, more = await _next_chunk(request.receive)
            seen += len(body)


async def read_body(request: Request, limit: int, too_large: Callable[[], RegistryError]
                    ) -> bytes:
    """The whole request body, refusing (``too_large()``) past ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    more = True
    while more:
        body, more = await _next_chunk(request.receive)
        size += len(body)
        if size > limit:
            if more:
                await discard_body(request, size)
            raise too_large()
        parts.append(body)
    return b"".join(parts)


def content_length(request: Request) -> int | None:
    """The ``Content-Length`` header as an int, ``None`` if absent (a malformed one never
    gets this far: the HTTP server refuses it)."""
    value = request.headers.get("content-length", "").strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        return None
    return int(value)


def pagination(request: Request) -> tuple[int | None, str | None]:
    """``n`` (clamped to :data:`MAX_PAGE`) and ``last`` of a listing request.

    A non-numeric or negative ``n`` is PAGINATION_NUMBER_INVALID.
    """
    params = request.query_params
    last = params.get("last") or None
    text = params.get("n")
    if text is None:
        return None, last
    if not (text.isascii() and text.isdigit()):
        raise RegistryError(
            PAGINATION_NUMBER_INVALID,
            f"n={text[:40]!r} is not a non-negative integer", detail={"n": text[:40]},
        )
    n = MAX_PAGE if len(text) > 9 else min(int(text), MAX_PAGE)
    return n, last


def next_link(path: str, n: int, last: str) -> str:
    """The RFC 5988 ``Link`` header value for the next page of a listing."""
    return f'<{path}?n={n}&last={quote(last, safe="")}>; rel="next"'
