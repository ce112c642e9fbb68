"""Moving blobs between content stores, verified on the way."""

from __future__ import annotations

from typing import BinaryIO

from layerstore.content.store import ContentStore
from layerstore.digest import CHUNK, Digest
from layerstore.oci import Descriptor


def write_stream(store: ContentStore, stream: BinaryIO, *, expected: Digest | None = None,
                 size: int | None = None, ref: str | None = None) -> Digest:
    """Stream ``stream`` into ``store`` and commit it, verifying ``expected``/``size`` if given.

    Content that is already stored is not written again when ``expected`` is known.
    """
    if expected is not None and store.exists(expected):
        return expected
    ref = ref or f"stream-{expected or id(stream)}"
    with store.writer(ref, total=size, expected=expected) as w:
        while chunk := stream.read(CHUNK):
            w.write(chunk)
        return w.commit(size, expected)


def put_bytes(store: ContentStore, data: bytes, *, expected: Digest | None = None) -> Digest:
    """Store a small in-memory blob (a manifest, a config) and return its digest."""
    digest = Digest.from_bytes(data, expected.algorithm if expected else "sha256")
    if store.exists(digest):
        if expected is not None and expected != digest:
            from layerstore.errors import DigestMismatch

            raise DigestMismatch(f"content is {digest}, expected {expected}")
        return digest
    with store.writer(f"bytes-{digest}", total=len(data), expected=expected or digest) as w:
        w.write(data)
        return w.commit(len(data), expected or digest)


def copy_blob(src: ContentStore, dst: ContentStore, desc: Descriptor) -> None:
    """Copy the blob ``desc`` from ``src`` to ``dst`` unless ``dst`` has it; verify on commit."""
    if dst.exists(desc.digest):
        return
    with src.reader(desc.digest) as stream:
        write_stream(dst, stream, expected=desc.digest, size=desc.size, ref=f"copy-{desc.digest}")
