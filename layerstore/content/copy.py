"""Putting content into any :class:`ContentStore`, verified on the way: streams, small
in-memory blobs, and blobs copied from another store."""

from __future__ import annotations

import uuid

from layerstore.compression import ByteSource
from layerstore.content.store import ContentStore
from layerstore.digest import CHUNK, Digest
from layerstore.errors import DigestMismatch, InvalidArgument
from layerstore.oci import Descriptor


def write_stream(store: ContentStore, stream: ByteSource, *, expected: Digest | None = None,
                 size: int | None = None, ref: str | None = None) -> Digest:
    """Copy ``stream`` into an ingest in 1 MiB reads and commit it; return the digest.

    Content already stored is not written again when ``expected`` is known. Without ``ref`` a
    fresh ingest is used and removed on any failure; with ``ref`` the stream supplies the bytes
    from the ingest's current offset on, and a failure other than a mismatch leaves the ingest
    resumable.
    """
    if expected is not None and store.exists(expected):
        return expected
    own_ref = ref is None
    writer = store.writer(ref or f"stream-{uuid.uuid4().hex}", total=size, expected=expected)
    try:
        while chunk := stream.read(CHUNK):
            writer.write(chunk)
        return writer.commit()
    except BaseException:
        if own_ref:
            writer.abort()
        else:
            writer.close()
        raise


def put_bytes(store: ContentStore, data: bytes, expected: Digest | None = None) -> Digest:
    """Store a small in-memory blob (a manifest, a config); return its digest."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidArgument(f"put_bytes() takes bytes, not {type(data).__name__}")
    if expected is not None and not isinstance(expected, Digest):
        raise InvalidArgument(f"expected digest must be a Digest, not {type(expected).__name__}")
    actual = Digest.from_bytes(bytes(data), expected.algorithm if expected else "sha256")
    if expected is not None and actual != expected:
        raise DigestMismatch(f"put_bytes: expected {expected}, got {actual}")
    if store.exists(actual):
        return actual
    writer = store.writer(f"put-{uuid.uuid4().hex}", total=len(data), expected=actual)
    try:
        writer.write(bytes(data))
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


def copy_blob(src: ContentStore, dst: ContentStore, desc: Descriptor) -> None:
    """Copy the blob ``desc`` from ``src`` to ``dst`` unless ``dst`` has it; verify on commit."""
    if dst.exists(desc.digest):
        return
    with src.reader(desc.digest) as stream:
        write_stream(dst, stream, expected=desc.digest, size=desc.size)
