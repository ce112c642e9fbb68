"""end-2 and end-10: blob GET (whole and by Range), HEAD and DELETE."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest

from tests.registry.server import Api, error_codes, sha256


def test_get_and_head_a_blob(api: Api, client: httpx.Client, repo: str) -> None:
    data = os.urandom(5000)
    digest = api.blob(repo, data)
    r = client.get(f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Content-Length"] == "5000"
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Accept-Ranges"] == "bytes"
    h = client.head(f"/v2/{repo}/blobs/{digest}")
    assert h.status_code == 200
    assert h.content == b""
    assert h.headers["Content-Length"] == "5000"
    assert h.headers["Docker-Content-Digest"] == digest


def test_large_blob_streams_back_intact(api: Api, client: httpx.Client, repo: str) -> None:
    data = os.urandom(9 * 1024 * 1024 + 17)
    digest = api.blob(repo, data)
    h = hashlib.sha256()
    size = 0
    with client.stream("GET", f"/v2/{repo}/blobs/{digest}") as r:
        assert r.status_code == 200
        for chunk in r.iter_bytes():
            h.update(chunk)
            size += len(chunk)
    assert size == len(data)
    assert "sha256:" + h.hexdigest() == digest


def test_empty_blob(api: Api, client: httpx.Client, repo: str) -> None:
    digest = api.blob(repo, b"")
    r = client.get(f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["Content-Length"] == "0"


@pytest.mark.parametrize(("header", "start", "end"), [
    ("bytes=0-9", 0, 9), ("bytes=10-", 10, 2999), ("bytes=-100", 2900, 2999),
    ("bytes=2990-5000", 2990, 2999), ("bytes=0-0", 0, 0), ("bytes=-5000", 0, 2999),
])
def test_range_gets_206_with_content_range(api: Api, client: httpx.Client, repo: str,
                                           header: str, start: int, end: int) -> None:
    data = os.urandom(3000)
    digest = api.blob(repo, data)
    r = client.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": header})
    assert r.status_code == 206, r.text
    assert r.content == data[start:end + 1]
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/3000"
    assert r.headers["Content-Length"] == str(end - start + 1)


def test_range_of_a_large_blob_streams(api: Api, client: httpx.Client, repo: str) -> None:
    data = os.urandom(3 * 1024 * 1024)
    digest = api.blob(repo, data)
    r = client.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=1000-2999999"})
    assert r.status_code == 206
    assert r.content == data[1000:3000000]


@pytest.mark.parametrize("header", ["bytes=3000-", "bytes=5000-6000", "bytes=-0"])
def test_unsatisfiable_range_is_416(api: Api, client: httpx.Client, repo: str,
                                    header: str) -> None:
    digest = api.blob(repo, os.urandom(3000))
    r = client.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": header})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == "bytes */3000"
    assert error_codes(r) == ["RANGE_INVALID"]


@pytest.mark.parametrize("header", ["garbage", "bytes=a-b", "bytes=5-1", "lines=0-1",
                                    "bytes=0-1,5-9", "bytes=", "bytes=--1"])
def test_malformed_or_multiple_ranges_are_ignored(api: Api, client: httpx.Client, repo: str,
                                                  header: str) -> None:
    data = os.urandom(100)
    digest = api.blob(repo, data)
    r = client.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": header})
    assert r.status_code == 200
    assert r.content == data


def test_unknown_blob_is_404_blob_unknown(client: httpx.Client, api: Api, repo: str) -> None:
    api.blob(repo, b"something")
    missing = sha256(b"missing")
    for method in ("GET", "HEAD"):
        r = client.request(method, f"/v2/{repo}/blobs/{missing}")
        assert r.status_code == 404
    assert error_codes(client.get(f"/v2/{repo}/blobs/{missing}")) == ["BLOB_UNKNOWN"]
    assert missing in client.get(f"/v2/{repo}/blobs/{missing}").json()["errors"][0]["message"]


def test_blob_of_another_repository_is_not_visible(api: Api, client: httpx.Client,
                                                   repo: str) -> None:
    digest = api.blob(repo, b"private to one repository")
    r = client.get(f"/v2/{repo}-other/blobs/{digest}")
    assert r.status_code == 404
    assert error_codes(r) == ["BLOB_UNKNOWN"]


def test_delete_unlinks_the_blob_from_the_repository(api: Api, client: httpx.Client,
                                                     repo: str) -> None:
    digest = api.blob(repo, b"to be deleted")
    other = api.blob(f"{repo}/keep", b"to be deleted")
    assert other == digest
    r = client.delete(f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 202
    assert client.head(f"/v2/{repo}/blobs/{digest}").status_code == 404
    assert client.head(f"/v2/{repo}/keep/blobs/{digest}").status_code == 200
    r = client.delete(f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 404
    assert error_codes(r) == ["BLOB_UNKNOWN"]


def test_manifests_are_readable_through_the_blob_endpoint(api: Api, client: httpx.Client,
                                                          repo: str) -> None:
    pushed = api.image(repo, "v1")
    r = client.get(f"/v2/{repo}/blobs/{pushed.digest}")
    assert r.status_code == 200
    assert r.content == pushed.body


def test_sha512_blob(client: httpx.Client, repo: str) -> None:
    data = os.urandom(4096)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
    assert r.status_code == 201, r.text
    r = client.get(f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == digest
