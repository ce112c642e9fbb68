"""Turning an uncompressed layer tar stream into a stored layer blob in one pass.

tar bytes → sha256 (diff_id) → compress → hash (blob digest) → content store ingest.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import BinaryIO

from layerstore.compression import compress_writer
from layerstore.content.store import ContentStore, ContentWriter
from layerstore.digest import CHUNK, Digest, DigestingWriter
from layerstore.oci import Descriptor, layer_media_type


@dataclass(frozen=True)
class Layer:
    """A stored layer: the blob's descriptor (compressed) and the uncompressed diff_id."""

    descriptor: Descriptor
    diff_id: Digest
    uncompressed_size: int


class _StoreSink:
    """Adapts a ContentWriter to the ``write``/``flush`` file shape."""

    def __init__(self, writer: ContentWriter) -> None:
        self._writer = writer

    def write(self, data: bytes) -> int:
        return self._writer.write(data)

    def flush(self) -> None:
        pass


class LayerBlobWriter:
    """A file-like sink for an uncompressed layer tar; :meth:`finish` stores the layer.

    Use as a context manager: leaving it without :meth:`finish` aborts the ingest.
    """

    def __init__(self, store: ContentStore, compression: str = "gzip", *,
                 docker_media_type: bool = False, level: int | None = None) -> None:
        self._media_type = layer_media_type(compression, docker_media_type)
        self._ingest = store.writer(f"layer-{uuid.uuid4().hex}")
        self._blob = DigestingWriter(_StoreSink(self._ingest))  # type: ignore[arg-type]
        self._compressor = compress_writer(self._blob, compression, level)  # type: ignore[arg-type]
        self._tar = DigestingWriter(self._compressor)  # type: ignore[arg-type]
        self._done = False

    def write(self, data: bytes) -> int:
        """Take the next bytes of the uncompressed tar."""
        return self._tar.write(data)

    def flush(self) -> None:
        """Nothing to flush; data moves on every write."""

    def finish(self) -> Layer:
        """Finish compression, commit the blob, and describe the layer."""
        self._compressor.close()
        digest = self._blob.digest()
        self._ingest.commit(self._blob.size, digest)
        self._done = True
        return Layer(
            descriptor=Descriptor(media_type=self._media_type, digest=digest,
                                  size=self._blob.size),
            diff_id=self._tar.digest(),
            uncompressed_size=self._tar.size,
        )

    def __enter__(self) -> LayerBlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            self._ingest.abort()


def store_tar_stream(stream: BinaryIO, store: ContentStore, compression: str = "gzip", *,
                     docker_media_type: bool = False, level: int | None = None) -> Layer:
    """Store an uncompressed tar read from ``stream`` as a compressed layer blob."""
    with LayerBlobWriter(store, compression, docker_media_type=docker_media_type,
                         level=level) as sink:
        while chunk := stream.read(CHUNK):
            sink.write(chunk)
        return sink.finish()
