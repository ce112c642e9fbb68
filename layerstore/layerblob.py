"""Turning an uncompressed layer tar stream into a stored layer blob in one pass.

tar bytes → sha256 (diff_id) → compress → sha256 (blob digest) → content-store ingest,
committed with the computed digest. Compression, the blob hash and the store writes run in a
background thread fed through a short queue, so they overlap with producing the tar.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import uuid
from dataclasses import dataclass
from typing import BinaryIO

from layerstore.compression import Writer, check, compress_writer
from layerstore.content.store import ContentStore, ContentWriter
from layerstore.digest import CHUNK, Digest, Hasher, new_hasher
from layerstore.errors import DigestMismatch, FailedPrecondition, LayerstoreError
from layerstore.oci import Descriptor, layer_media_type


@dataclass(frozen=True)
class Layer:
    """A stored layer: the blob's descriptor (compressed) and the uncompressed diff_id."""

    descriptor: Descriptor
    diff_id: Digest
    uncompressed_size: int


class _BlobSink:
    """Hashes compressed bytes and hands them to the ingest in ~1 MiB writes."""

    def __init__(self, writer: ContentWriter) -> None:
        self._writer = writer
        self._hasher: Hasher = new_hasher("sha256")
        self._buf = bytearray()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._buf += data
        if len(self._buf) >= CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buf:
            self._hasher.update(self._buf)
            self._writer.write(bytes(self._buf))
            self.size += len(self._buf)
            self._buf = bytearray()

    def digest(self) -> Digest:
        return Digest("sha256", self._hasher.hexdigest())


class _Background:
    """Runs a writer in a thread fed through a short queue; errors surface in :meth:`close`."""

    def __init__(self, target: Writer) -> None:
        self._target = target
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="layer-compress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._target.write(data)
                except BaseException as exc:
                    self._error = exc
        if self._error is None:
            try:
                self._target.close()
            except BaseException as exc:
                self._error = exc

    def _check(self) -> None:
        error = self._error
        if error is None:
            return
        if isinstance(error, LayerstoreError):
            raise error
        raise FailedPrecondition(f"writing the layer blob failed: {error}") from error

    def write(self, data: bytes) -> None:
        self._check()
        self._queue.put(data)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._check()


class LayerBlobWriter:
    """A sink for an uncompressed layer tar; :meth:`finish` commits and describes the layer.

    Use as a context manager: leaving it without :meth:`finish` aborts the ingest.
    """

    def __init__(self, store: ContentStore, compression: str = "gzip", *,
                 docker_media_type: bool = False, level: int | None = None) -> None:
        self._media_type = layer_media_type(check(compression), docker_media_type)
        self._ingest = store.writer(f"layer-{uuid.uuid4().hex}")
        self._blob = _BlobSink(self._ingest)
        self._compressor = _Background(compress_writer(self._blob, compression, level))
        self._diff = new_hasher("sha256")
        self._size = 0
        self._state = "open"

    def write(self, data: bytes | memoryview) -> int:
        """Take the next bytes of the uncompressed tar."""
        self._diff.update(data)
        self._compressor.write(bytes(data))
        self._size += len(data)
        return len(data)

    def finish(self, expected_diff_id: Digest | None = None) -> Layer:
        """Finish compression, commit the blob, and describe the layer.

        With ``expected_diff_id``, a tar that hashes otherwise is refused (``DigestMismatch``)
        and nothing is stored.
        """
        self._state = "closing"
        self._compressor.close()
        diff_id = Digest("sha256", self._diff.hexdigest())
        if expected_diff_id is not None and diff_id != expected_diff_id:
            raise DigestMismatch(f"layer tar has diff_id {diff_id}, expected {expected_diff_id}")
        self._blob.flush()
        digest = self._blob.digest()
        self._ingest.commit(self._blob.size, digest)
        self._state = "done"
        return Layer(
            descriptor=Descriptor(media_type=self._media_type, digest=digest,
                                  size=self._blob.size),
            diff_id=diff_id,
            uncompressed_size=self._size,
        )

    def __enter__(self) -> LayerBlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._state == "done":
            return
        if self._state == "open":
            with contextlib.suppress(BaseException):
                self._compressor.close()
        with contextlib.suppress(LayerstoreError):
            self._ingest.abort()


def store_tar_stream(stream: BinaryIO, store: ContentStore, compression: str = "gzip", *,
                     docker_media_type: bool = False, level: int | None = None,
                     expected_diff_id: Digest | None = None) -> Layer:
    """Store an uncompressed tar read from ``stream`` as a compressed layer blob (refused,
    storing nothing, if it does not hash to ``expected_diff_id``)."""
    with LayerBlobWriter(store, compression, docker_media_type=docker_media_type,
                         level=level) as sink:
        while chunk := stream.read(CHUNK):
            sink.write(chunk)
        return sink.finish(expected_diff_id)
