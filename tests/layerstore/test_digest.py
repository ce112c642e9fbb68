"""Digest values: parsing, hashing, chainIDs."""

from __future__ import annotations

import hashlib
import io

import pytest

from layerstore.digest import Digest, DigestingWriter, chain_id, chain_ids
from layerstore.errors import InvalidArgument

pytestmark = pytest.mark.unit

EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_parse_and_format_round_trip() -> None:
    d = Digest.parse(EMPTY)
    assert d.algorithm == "sha256" and str(d) == EMPTY and d.encoded == d.hex


def test_sha512_accepted() -> None:
    text = "sha512:" + hashlib.sha512(b"x").hexdigest()
    assert str(Digest.parse(text)) == text
    assert Digest.from_bytes(b"x", "sha512") == Digest.parse(text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "missing"),
        ("sha256:abc", "64 lowercase hex"),
        ("sha256:" + "E" * 64, "64 lowercase hex"),
        ("md5:" + "0" * 32, "unsupported digest algorithm"),
        ("SHA256:" + "0" * 64, "malformed algorithm"),
        ("sha512:" + "0" * 64, "128 lowercase hex"),
        ("", "missing"),
    ],
)
def test_bad_digests_name_the_problem(text: str, problem: str) -> None:
    with pytest.raises(InvalidArgument, match=problem):
        Digest.parse(text)


def test_streaming_hash_equals_bytes_hash() -> None:
    data = bytes(range(256)) * 10000
    assert Digest.from_stream(io.BytesIO(data)) == Digest.from_bytes(data)
    w = DigestingWriter()
    for i in range(0, len(data), 777):
        w.write(data[i:i + 777])
    assert w.digest() == Digest.from_bytes(data) and w.size == len(data)


def test_chain_ids_follow_the_spec() -> None:
    a, b, c = (Digest.from_bytes(x) for x in (b"a", b"b", b"c"))
    ids = chain_ids([a, b, c])
    assert ids[0] == a
    assert ids[1] == Digest.from_bytes(f"{a} {b}".encode())
    assert ids[2] == Digest.from_bytes(f"{ids[1]} {c}".encode())
    assert chain_id([a, b, c]) == ids[2]
    with pytest.raises(InvalidArgument):
        chain_id([])


def test_digests_sort_and_hash() -> None:
    a, b = Digest.from_bytes(b"1"), Digest.from_bytes(b"2")
    assert len({a, b, Digest.parse(str(a))}) == 2
    assert sorted([b, a]) == sorted([a, b])
