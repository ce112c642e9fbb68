"""Blob uploads: ``POST /v2/<name>/blobs/uploads/`` (session, monolithic or mount) and
``GET``/``PATCH``/``PUT``/``DELETE /v2/<name>/blobs/uploads/<uuid>``."""

from __future__ import annotations

import contextlib
import re

from starlette.responses import Response

from layerstore.digest import Digest
from registry.auth.access import PULL, Scope
from registry.errors import (
    BLOB_UPLOAD_INVALID,
    DENIED,
    DIGEST_INVALID,
    RANGE_INVALID,
    SIZE_INVALID,
    UNAUTHORIZED,
    RegistryError,
    as_registry_error,
)
from registry.handlers.base import (
    Context,
    absolute_url,
    body_chunks,
    content_length,
    respond,
)
from registry.handlers.limits import check_upload_size
from registry.names import check_name, check_upload_id, parse_digest
from registry.storage.errors import StorageError
from registry.storage.threads import run_blocking

_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?\s*([0-9]{1,19})-([0-9]{1,19})(?:/(?:[0-9]+|\*))?")


def range_header(offset: int) -> str:
    """The ``Range`` value for an upload holding ``offset`` bytes (``0-0`` when empty)."""
    return f"0-{max(offset - 1, 0)}"


def session_headers(ctx: Context, upload_id: str, offset: int) -> dict[str, str]:
    """The headers that tell a client where an upload session is and what it holds."""
    return {
        "Location": absolute_url(ctx.request, f"/v2/{ctx.name}/blobs/uploads/{upload_id}"),
        "Docker-Upload-UUID": upload_id,
        "Range": range_header(offset),
    }


def _created(ctx: Context, digest: Digest) -> Response:
    return respond(201, {"Location": absolute_url(ctx.request, f"/v2/{ctx.name}/blobs/{digest}"),
                         "Docker-Content-Digest": str(digest)})


def _chunk_bounds(ctx: Context) -> tuple[int | None, int | None]:
    """``(start, length)`` from ``Content-Range`` and ``Content-Length`` (either may be
    ``None``); a malformed range is BLOB_UPLOAD_INVALID, a backwards one RANGE_INVALID and
    disagreeing lengths SIZE_INVALID."""
    declared = content_length(ctx.request)
    header = ctx.request.headers.get("content-range")
    if header is None:
        return None, declared
    match = _CONTENT_RANGE.fullmatch(header.strip())
    if match is None:
        raise RegistryError(
            BLOB_UPLOAD_INVALID,
            f"malformed Content-Range {header[:80]!r} for upload {ctx.arg} to {ctx.name!r}: "
            "want <start>-<end>, inclusive", detail={"Content-Range": header[:80]},
        )
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        raise RegistryError(
            RANGE_INVALID,
            f"Content-Range {header[:80]!r} for upload {ctx.arg} to {ctx.name!r} ends "
            "before it starts", detail={"Content-Range": header[:80]},
        )
    length = end - start + 1
    if declared is not None and declared != length:
        raise RegistryError(
            SIZE_INVALID,
            f"Content-Length {declared} does not match Content-Range {header[:80]!r} "
            f"({length} bytes) for upload {ctx.arg} to {ctx.name!r}",
            detail={"Content-Length": declared, "Content-Range": header[:80]},
        )
    return start, length


def _digest_param(ctx: Context) -> Digest:
    text = ctx.request.query_params.get("digest")
    if not text:
        raise RegistryError(
            DIGEST_INVALID,
            f"closing upload {ctx.arg} to {ctx.name!r} needs a ?digest= query parameter",
        )
    return parse_digest(text, ctx.name)


async def _may_pull(ctx: Context, source: str) -> bool:
    try:
        await ctx.services.authorizer.authorize(ctx.request, (Scope.repository(source, PULL),))
    except RegistryError as err:
        if err.code in (UNAUTHORIZED, DENIED):
            return False
        raise
    return True


async def start(ctx: Context) -> Response:
    """POST: mount a blob (201), upload one whole (``?digest=``, 201) or open a session
    (202 with ``Location``)."""
    check_upload_size(ctx, content_length(ctx.request))
    await _check_quota(ctx, None)
    name, params, blobs = ctx.name, ctx.request.query_params, ctx.services.blobs
    mount = params.get("mount")
    if mount is not None:
        digest = parse_digest(mount, name)
        source = params.get("from") or None
        if source is not None:
            check_name(source)
        allowed = source is None or await _may_pull(ctx, source)
        held = None if not allowed or ctx.services.quota is None else \
            await ctx.services.quota.holds(name, digest)
        size = await blobs.mount(name, digest, source) if allowed else None
        if size is not None:
            if held is False:
                await _refuse_mount(ctx, digest, size)
            return _created(ctx, digest)
    elif params.get("digest") is not None:
        return await _monolithic(ctx, parse_digest(params["digest"], name))
    if ctx.services.quota is not None:
        await ctx.services.quota.check_full(name)
    record = await blobs.start_upload(name)
    return respond(202, session_headers(ctx, record.uuid, 0))


async def _refuse_mount(ctx: Context, digest: Digest, size: int) -> None:
    """Undo a mount its project's quota has no room for, and refuse it."""
    assert ctx.services.quota is not None
    try:
        await ctx.services.quota.check_adding(ctx.name, None, size, f"mounting {digest}")
    except RegistryError:
        await run_blocking(ctx.services.metadata.unlink_blob, ctx.name, digest)
        raise


async def _monolithic(ctx: Context, digest: Digest) -> Response:
    blobs = ctx.services.blobs
    record = await blobs.start_upload(ctx.name)
    try:
        async with blobs.upload(ctx.name, record.uuid) as upload:
            await upload.receive(body_chunks(ctx.request),
                                 length=content_length(ctx.request))
            await _check_commit(ctx, digest, upload.offset)
            await upload.commit(digest)
    except BaseException:
        with contextlib.suppress(Exception):
            await blobs.cancel_upload(ctx.name, record.uuid)
        raise
    return _created(ctx, digest)


async def status(ctx: Context) -> Response:
    """GET a session: 204 with its ``Range``."""
    upload_id = check_upload_id(ctx.arg, ctx.name)
    offset = await ctx.services.blobs.upload_status(ctx.name, upload_id)
    return respond(204, session_headers(ctx, upload_id, offset))


async def patch(ctx: Context) -> Response:
    """PATCH a chunk (with ``Content-Range``) or a stream (without) into a session (202)."""
    upload_id = check_upload_id(ctx.arg, ctx.name)
    start_at, length = _chunk_bounds(ctx)
    check_upload_size(ctx, length, start_at)
    await _check_quota(ctx, length, start_at)
    try:
        async with ctx.services.blobs.upload(ctx.name, upload_id) as upload:
            offset = await upload.receive(body_chunks(ctx.request), start=start_at,
                                          length=length)
    except (RegistryError, StorageError) as exc:
        err = as_registry_error(exc)
        _locate(err, ctx, upload_id)
        raise err from None
    return respond(202, session_headers(ctx, upload_id, offset))


async def finish(ctx: Context) -> Response:
    """PUT ``?digest=``: take an optional last chunk, verify and publish the blob (201)."""
    upload_id = check_upload_id(ctx.arg, ctx.name)
    digest = _digest_param(ctx)
    start_at, length = _chunk_bounds(ctx)
    check_upload_size(ctx, length, start_at)
    await _check_quota(ctx, length, start_at)
    try:
        async with ctx.services.blobs.upload(ctx.name, upload_id) as upload:
            await upload.receive(body_chunks(ctx.request), start=start_at, length=length)
            await _check_commit(ctx, digest, upload.offset)
            await upload.commit(digest)
    except (RegistryError, StorageError) as exc:
        err = as_registry_error(exc)
        if err.code is DENIED:
            with contextlib.suppress(Exception):
                await ctx.services.blobs.cancel_upload(ctx.name, upload_id)
        _locate(err, ctx, upload_id)
        raise err from None
    return _created(ctx, digest)


async def _check_quota(ctx: Context, length: int | None, start: int | None = None) -> None:
    """Refuse an upload announcing more than its project's quota leaves (413)."""
    if ctx.services.quota is not None:
        await ctx.services.quota.check_announced(
            ctx.name, length if length is not None else content_length(ctx.request), start)


async def _check_commit(ctx: Context, digest: Digest, size: int) -> None:
    """Refuse a blob its project's quota has no room for (403 DENIED)."""
    if ctx.services.quota is not None:
        await ctx.services.quota.check_adding(ctx.name, digest, size)


def _locate(err: RegistryError, ctx: Context, upload_id: str) -> None:
    if err.status == 416:
        offset = ctx.services.blobs.upload_offset(upload_id)
        err.headers.update(session_headers(ctx, upload_id, offset))


async def cancel(ctx: Context) -> Response:
    """DELETE a session and its bytes (204)."""
    upload_id = check_upload_id(ctx.arg, ctx.name)
    await ctx.services.blobs.cancel_upload(ctx.name, upload_id)
    return respond(204)
