"""Layer compression: gzip through ISA-L, zstd through ``zstandard``, or none.

Everything streams: :func:`compress_writer` wraps a binary sink, :func:`decompress_reader`
wraps a binary source and detects its compression from the magic bytes when not told.
Output is reproducible: the gzip header carries no name and a zero mtime.
"""

from __future__ import annotations

import io
from typing import BinaryIO, Literal, Protocol, cast

import zstandard
from isal import igzip, isal_zlib

from layerstore.errors import InvalidArgument

Compression = Literal["gzip", "zstd", "none"]
COMPRESSIONS: tuple[Compression, ...] = ("gzip", "zstd", "none")
DEFAULT_GZIP_LEVEL = 1
DEFAULT_ZSTD_LEVEL = 3

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)


class _CompressObj(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


class ByteSink(Protocol):
    """Where compressed bytes go: anything with ``write``."""

    def write(self, data: bytes, /) -> int: ...


class ByteSource(Protocol):
    """Where compressed bytes come from: anything with ``read``."""

    def read(self, size: int = -1, /) -> bytes: ...


class Writer(Protocol):
    """A byte sink: ``write`` then ``close`` (which flushes but leaves the sink open)."""

    def write(self, data: bytes, /) -> int: ...
    def close(self) -> None: ...


def detect(head: bytes) -> str:
    """The compression named by a stream's first bytes: gzip, zstd, bzip2, xz or none."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return "none"


def check(compression: str) -> Compression:
    """Validate a compression name given from outside."""
    if compression not in COMPRESSIONS:
        raise InvalidArgument(
            f"unknown compression {compression!r} (use one of {', '.join(COMPRESSIONS)})"
        )
    return compression


class _StreamCompressor:
    """Feeds a zlib-style compressor object (``compress``/``flush``) into a sink."""

    def __init__(self, sink: ByteSink, compressor: _CompressObj) -> None:
        self._sink = sink
        self._z = compressor

    def write(self, data: bytes) -> int:
        out = self._z.compress(data)
        if out:
            self._sink.write(out)
        return len(data)

    def close(self) -> None:
        self._sink.write(self._z.flush())


class _PlainWriter:
    def __init__(self, sink: ByteSink) -> None:
        self._sink = sink

    def write(self, data: bytes) -> int:
        self._sink.write(data)
        return len(data)

    def close(self) -> None:
        pass


def compress_writer(sink: ByteSink, compression: str, level: int | None = None) -> Writer:
    """A writer that compresses into ``sink``; ``close()`` finishes the stream."""
    compression = check(compression)
    if compression == "gzip":
        gz = isal_zlib.compressobj(DEFAULT_GZIP_LEVEL if level is None else level,
                                   isal_zlib.DEFLATED, 31)
        return _StreamCompressor(sink, gz)
    if compression == "zstd":
        zs = zstandard.ZstdCompressor(level=DEFAULT_ZSTD_LEVEL if level is None else level)
        return _StreamCompressor(sink, zs.compressobj())
    return _PlainWriter(sink)


class _Prefixed(io.RawIOBase):
    """A raw reader that yields ``prefix`` and then the rest of ``stream``."""

    def __init__(self, prefix: bytes, stream: ByteSource) -> None:
        self._prefix = prefix
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        if self._prefix:
            n = min(len(buf), len(self._prefix))
            buf[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._stream.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def decompress_reader(stream: ByteSource, compression: str | None = None) -> BinaryIO:
    """A readable of the decompressed bytes of ``stream``, detecting gzip/zstd if not told."""
    source: BinaryIO
    if compression is None:
        head = stream.read(8)
        compression = detect(head)
        source = io.BufferedReader(_Prefixed(head, stream), buffer_size=1 << 20)
    else:
        source = cast(BinaryIO, stream)  # the decompressors below only call read()
    if compression == "gzip":
        # isal's igzip module carries no annotations; GzipFile is a binary reader
        gz = igzip.IGzipFile(fileobj=source, mode="rb")  # type: ignore[no-untyped-call]
        return cast(BinaryIO, gz)
    if compression == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
    if compression == "none":
        return source
    if compression == "bzip2":
        import bz2

        return cast(BinaryIO, bz2.BZ2File(source))
    if compression == "xz":
        import lzma

        return cast(BinaryIO, lzma.LZMAFile(source))
    raise InvalidArgument(f"unknown compression {compression!r}")
