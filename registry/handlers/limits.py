"""Upload size limits checked before a byte of the body is read.

A blob upload (``POST``, ``PATCH``, the closing ``PUT``) that announces, by its
``Content-Length`` or ``Content-Range``, a blob larger than ``max_blob_bytes`` (0: no limit)
or more bytes than the store has free beyond ``min_free_bytes`` is refused at once with 413
SIZE_INVALID naming the limit, instead of being read until the client gives up. An upload
that announces no length (chunked transfer encoding) is not checked here.
"""

from __future__ import annotations

import os
from pathlib import Path

from registry.config import Settings
from registry.errors import SIZE_INVALID, RegistryError
from registry.handlers.base import Context

TOO_LARGE = 413


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still put on the file system of ``path`` (its
    nearest existing ancestor)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _refuse(ctx: Context, message: str, detail: dict[str, object]) -> RegistryError:
    # Closing the connection stops the server from reading (and dropping) the rest.
    return RegistryError(SIZE_INVALID, message, status=TOO_LARGE,
                         detail={"repository": ctx.name, **detail},
                         headers={"Connection": "close"})


def _announced(ctx: Context) -> int | None:
    """``Content-Length`` however long (the handlers' reader ignores absurdly long ones)."""
    value = ctx.request.headers.get("content-length", "").strip()
    return int(value) if value.isascii() and value.isdigit() else None


def check_upload_size(ctx: Context, length: int | None, start: int | None = None) -> None:
    """Refuse (413 SIZE_INVALID) an upload to ``ctx.name`` announcing ``length`` more bytes
    from offset ``start`` when the blob would exceed ``max_blob_bytes`` or the bytes the
    store's free space less ``min_free_bytes``; ``length`` ``None`` or 0 passes."""
    if length is None:
        length = _announced(ctx)
    if not length:
        return
    settings: Settings = ctx.services.settings
    end = (start or 0) + length
    if settings.max_blob_bytes and end > settings.max_blob_bytes:
        raise _refuse(ctx, f"blob upload to {ctx.name!r} announces {end} bytes, more than "
                      f"max_blob_bytes = {settings.max_blob_bytes}",
                      {"announced": end, "max_blob_bytes": settings.max_blob_bytes})
    available = free_bytes(settings.content_root) - settings.min_free_bytes
    if length > available:
        raise _refuse(ctx, f"blob upload to {ctx.name!r} announces {length} bytes, more than "
                      f"the store can take: {max(available, 0)} bytes free beyond "
                      f"min_free_bytes = {settings.min_free_bytes}",
                      {"announced": length, "available": max(available, 0),
                       "min_free_bytes": settings.min_free_bytes})
