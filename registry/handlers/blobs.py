"""``/v2/<name>/blobs/<digest>``: GET (with ``Range``), HEAD and DELETE."""

from __future__ import annotations

import io

from starlette.responses import Response

from layerstore.digest import Digest
from registry import audit
from registry.audit.events import DELETE
from registry.errors import RANGE_INVALID, RegistryError
from registry.handlers.base import (
    OCTET_STREAM,
    Context,
    FileRangeResponse,
    RawResponse,
    ReaderResponse,
    respond,
)
from registry.names import parse_digest
from registry.storage.errors import BlobUnknown
from registry.storage.threads import run_blocking
from registry.webhooks.service import BLOB_DETAIL

SMALL_BLOB = 64 * 1024


def parse_range(header: str | None, size: int, where: str) -> tuple[int, int] | None:
    """The ``(start, length)`` a ``Range: bytes=…`` header asks of a blob of ``size`` bytes.

    ``None`` means "send it all" (no header, another unit, several ranges or a malformed
    one, which RFC 9110 lets a server ignore); an unsatisfiable range is RANGE_INVALID (416).
    """
    if not header:
        return None
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first.isascii() and last.isascii()):
        return None
    # Positions beyond any file: cap the digits before int() sees them.
    first, last = first[:19], last[:19]
    if first == "":
        if not last.isdigit():
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(header, size, where)
        start = max(size - suffix, 0)
        return start, size - start
    if not first.isdigit() or (last and not last.isdigit()):
        return None
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise _unsatisfiable(header, size, where)
    end = min(end, size - 1)
    return start, end - start + 1


def _unsatisfiable(header: str, size: int, where: str) -> RegistryError:
    return RegistryError(
        RANGE_INVALID, f"range {header[:80]!r} is outside {where} ({size} bytes)",
        detail={"size": size}, headers={"Content-Range": f"bytes */{size}"},
    )


def _blob_headers(digest: Digest, length: int) -> list[tuple[bytes, bytes]]:
    text = str(digest).encode()
    return [
        (b"content-length", str(length).encode()),
        (b"content-type", OCTET_STREAM.encode()),
        (b"docker-content-digest", text),
        (b"accept-ranges", b"bytes"),
        (b"etag", b'"' + text + b'"'),
        (b"cache-control", b"max-age=31536000"),
    ]


async def head(ctx: Context) -> Response:
    """HEAD a blob: its size and digest, no body."""
    digest = parse_digest(ctx.arg, ctx.name)
    return RawResponse(200, _blob_headers(digest, await _size(ctx, digest)))


async def _size(ctx: Context, digest: Digest) -> int:
    """The blob's size as the repository sees it; BlobUnknown if it does not."""
    size = await ctx.services.reads.blob_size(ctx.name, digest)
    if size is None:
        raise BlobUnknown(f"blob {digest} is unknown to repository {ctx.name!r}", str(digest))
    return size


async def get(ctx: Context) -> Response:
    """GET a blob, or the part a ``Range`` header asks for (206): small blobs from the
    in-memory cache of verified content, others streamed from their file."""
    blobs = ctx.services.blobs
    digest = parse_digest(ctx.arg, ctx.name)
    size = await _size(ctx, digest)
    location = await run_blocking(blobs.blob_location, ctx.name, digest)
    if location is not None:
        return respond(307, {"Location": location, "Docker-Content-Digest": str(digest)})
    wanted = parse_range(ctx.request.headers.get("range"), size,
                         f"blob {digest} of {ctx.name!r}")
    start, length = wanted if wanted is not None else (0, size)
    headers = _blob_headers(digest, length)
    status = 200
    if wanted is not None:
        status = 206
        headers.append((b"content-range",
                        f"bytes {start}-{start + length - 1}/{size}".encode()))
    if size <= SMALL_BLOB:
        data = await blobs.read_small(digest)
        return RawResponse(status, headers, data[start:start + length])
    stream = await blobs.open_blob(ctx.name, digest, start)
    if isinstance(stream, io.BufferedReader):
        return FileRangeResponse(status, headers, stream, length)
    return ReaderResponse(status, headers, stream, length)


async def delete(ctx: Context) -> Response:
    """DELETE a blob from a repository (202)."""
    digest = parse_digest(ctx.arg, ctx.name)
    await ctx.services.blobs.delete(ctx.name, digest)
    audit.record(audit.request_event(DELETE, ctx.request, ctx.identity.subject, ctx.name,
                                     str(digest), str(digest), BLOB_DETAIL),
                 ctx.services.settings)
    return respond(202, {"Docker-Content-Digest": str(digest)})
