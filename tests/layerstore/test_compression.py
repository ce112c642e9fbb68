"""Compression: detection, streaming round trips, reproducible output, interoperability."""

from __future__ import annotations

import gzip
import io
import os

import pytest
import zstandard

from layerstore.compression import compress_writer, decompress_reader, detect
from layerstore.errors import InvalidArgument

pytestmark = pytest.mark.unit

DATA = os.urandom(1 << 16) * 8 + b"tail"


def _compress(kind: str, data: bytes = DATA) -> bytes:
    out = io.BytesIO()
    w = compress_writer(out, kind)
    for i in range(0, len(data), 100_000):
        w.write(data[i:i + 100_000])
    w.close()
    return out.getvalue()


@pytest.mark.parametrize("kind", ["gzip", "zstd", "none"])
def test_round_trip_with_detection(kind: str) -> None:
    blob = _compress(kind)
    assert detect(blob[:8]) == kind
    assert decompress_reader(io.BytesIO(blob)).read() == DATA
    assert decompress_reader(io.BytesIO(blob), kind).read() == DATA


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_output_is_reproducible(kind: str) -> None:
    assert _compress(kind) == _compress(kind)


def test_interoperates_with_reference_libraries() -> None:
    assert gzip.decompress(_compress("gzip")) == DATA
    assert zstandard.ZstdDecompressor().stream_reader(io.BytesIO(_compress("zstd"))).read() == DATA
    assert decompress_reader(io.BytesIO(gzip.compress(DATA, mtime=0))).read() == DATA


def test_unknown_compression_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="unknown compression 'lz4'"):
        compress_writer(io.BytesIO(), "lz4")
