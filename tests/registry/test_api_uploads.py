"""end-4a/4b, end-5, end-6, end-11, end-13, end-14: blob upload sessions, chunks, streams,
mounts, digest verification and resumption after a restart."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from registry.metadata.sqlite import SqliteMetadataStore
from tests.registry.server import Api, RegistryServer, error_codes, sha256, sha512


def start_session(client: httpx.Client, repo: str) -> str:
    r = client.post(f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == "0-0"
    uuid = r.headers["Docker-Upload-UUID"]
    assert uuid in r.headers["Location"]
    return r.headers["Location"]


def content_files(root: Path) -> list[Path]:
    return [p for p in (root / "content" / "blobs").rglob("*") if p.is_file()]


def test_monolithic_post(client: httpx.Client, repo: str) -> None:
    data = os.urandom(10_000)
    digest = sha256(data)
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data,
                    headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == str(client.base_url.join(f"/v2/{repo}/blobs/{digest}"))
    assert r.headers["Docker-Content-Digest"] == digest
    assert client.get(r.headers["Location"]).content == data


def test_post_then_put(client: httpx.Client, repo: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    digest = sha256(data)
    location = start_session(client, repo)
    r = client.put(location, params={"digest": digest}, content=data,
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == str(client.base_url.join(f"/v2/{repo}/blobs/{digest}"))
    assert r.headers["Docker-Content-Digest"] == digest
    assert client.get(f"/v2/{repo}/blobs/{digest}").content == data
    r = client.get(location)
    assert r.status_code == 404
    assert error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]


def test_chunked_upload_with_content_range(client: httpx.Client, repo: str) -> None:
    data = os.urandom(2_500_000)
    digest = sha256(data)
    location = start_session(client, repo)
    chunk = 1_000_000
    for start in range(0, len(data), chunk):
        part = data[start:start + chunk]
        end = start + len(part) - 1
        r = client.patch(location, content=part, headers={
            "Content-Type": "application/octet-stream", "Content-Range": f"{start}-{end}",
            "Content-Length": str(len(part))})
        assert r.status_code == 202, r.text
        assert r.headers["Range"] == f"0-{end}"
        location = r.headers["Location"]
        status = client.get(location)
        assert status.status_code == 204
        assert status.headers["Range"] == f"0-{end}"
        assert status.headers["Docker-Upload-UUID"] in location
    r = client.put(location, params={"digest": digest})
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/{repo}/blobs/{digest}").content == data


def test_final_chunk_in_the_closing_put(client: httpx.Client, repo: str) -> None:
    data = os.urandom(4000)
    location = start_session(client, repo)
    r = client.patch(location, content=data[:1000], headers={"Content-Range": "0-999"})
    assert r.status_code == 202
    r = client.put(r.headers["Location"], params={"digest": sha256(data)},
                   content=data[1000:], headers={"Content-Range": "1000-3999"})
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/{repo}/blobs/{sha256(data)}").content == data


def test_out_of_order_chunk_is_416_with_the_current_range(client: httpx.Client,
                                                          repo: str) -> None:
    location = start_session(client, repo)
    r = client.patch(location, content=b"a" * 100, headers={"Content-Range": "0-99"})
    assert r.status_code == 202
    for bad in ("50-149", "101-200", "0-99"):
        r = client.patch(location, content=b"b" * 100, headers={"Content-Range": bad})
        assert r.status_code == 416, bad
        assert r.headers["Range"] == "0-99"
        assert error_codes(r) == ["RANGE_INVALID"]
        assert r.headers["Location"] == location
    r = client.patch(location, content=b"c" * 10, headers={"Content-Range": "100-109"})
    assert r.status_code == 202
    assert r.headers["Range"] == "0-109"


def test_first_chunk_must_start_at_zero(client: httpx.Client, repo: str) -> None:
    location = start_session(client, repo)
    r = client.patch(location, content=b"x" * 10, headers={"Content-Range": "5-14"})
    assert r.status_code == 416
    assert r.headers["Range"] == "0-0"


def test_chunk_length_must_match_its_range(client: httpx.Client, repo: str) -> None:
    location = start_session(client, repo)
    r = client.patch(location, content=b"x" * 10, headers={"Content-Range": "0-99"})
    assert r.status_code == 400
    assert error_codes(r) == ["SIZE_INVALID"]
    assert client.get(location).headers["Range"] == "0-0"


def test_streamed_patch_without_content_range(client: httpx.Client, repo: str) -> None:
    parts = [os.urandom(700_000) for _ in range(4)]
    data = b"".join(parts)
    location = start_session(client, repo)

    def stream():  # a body of unknown length: chunked transfer encoding
        yield from parts

    r = client.patch(location, content=stream())
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == f"0-{len(data) - 1}"
    r = client.patch(r.headers["Location"], content=b"tail")
    assert r.status_code == 202
    r = client.put(r.headers["Location"], params={"digest": sha256(data + b"tail")})
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/{repo}/blobs/{sha256(data + b'tail')}").content == data + b"tail"


def test_upload_status_of_a_new_session(client: httpx.Client, repo: str) -> None:
    location = start_session(client, repo)
    r = client.get(location)
    assert r.status_code == 204
    assert r.headers["Range"] == "0-0"
    assert r.headers["Location"] == location


def test_cancel_discards_the_session(client: httpx.Client, repo: str) -> None:
    location = start_session(client, repo)
    client.patch(location, content=b"abc")
    r = client.delete(location)
    assert r.status_code == 204
    r = client.get(location)
    assert r.status_code == 404
    assert error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
    assert client.patch(location, content=b"more").status_code == 404
    assert client.delete(location).status_code == 404


def test_session_belongs_to_its_repository(client: httpx.Client, repo: str) -> None:
    location = start_session(client, repo)
    upload_id = location.rsplit("/", 1)[1]
    r = client.patch(f"/v2/{repo}-other/blobs/uploads/{upload_id}", content=b"x")
    assert r.status_code == 404
    assert error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]


def test_unknown_or_malformed_session_is_404(client: httpx.Client, repo: str) -> None:
    for upload_id in ("0b6a3c8e-4f4e-4b8a-9d55-2d6f3f0a0c11", "not-a-uuid", "%2e%2e", "A" * 300):
        for method in ("GET", "PATCH", "PUT", "DELETE"):
            r = client.request(method, f"/v2/{repo}/blobs/uploads/{upload_id}",
                               params={"digest": sha256(b"")} if method == "PUT" else None)
            assert r.status_code == 404, (upload_id, method, r.text)
            assert error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]


def test_digest_mismatch_stores_nothing(client: httpx.Client, registry: RegistryServer,
                                        repo: str) -> None:
    data = os.urandom(50_000)
    wrong = sha256(b"something else")
    before = set(content_files(registry.root))
    location = start_session(client, repo)
    r = client.put(location, params={"digest": wrong}, content=data)
    assert r.status_code == 400
    assert error_codes(r) == ["DIGEST_INVALID"]
    assert wrong in r.json()["errors"][0]["message"]
    assert client.head(f"/v2/{repo}/blobs/{wrong}").status_code == 404
    assert client.head(f"/v2/{repo}/blobs/{sha256(data)}").status_code == 404
    assert client.get(location).status_code == 404
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": wrong}, content=data)
    assert r.status_code == 400
    assert error_codes(r) == ["DIGEST_INVALID"]
    new = set(content_files(registry.root)) - before
    assert not any(p.name in (sha256(data)[7:], wrong[7:]) for p in new)


def test_closing_put_needs_a_valid_digest(client: httpx.Client, repo: str) -> None:
    location = start_session(client, repo)
    client.patch(location, content=b"abc")
    for params in ({}, {"digest": "sha256:abc"}, {"digest": "md5:" + "0" * 32},
                   {"digest": "nonsense"}):
        r = client.put(location, params=params)
        assert r.status_code == 400, params
        assert error_codes(r) == ["DIGEST_INVALID"]
    assert client.get(location).headers["Range"] == "0-2"
    assert client.put(location, params={"digest": sha256(b"abc")}).status_code == 201


def test_sha512_upload(client: httpx.Client, repo: str) -> None:
    data = os.urandom(2 * 1024 * 1024 + 3)
    digest = sha512(data)
    location = start_session(client, repo)
    r = client.patch(location, content=data)
    assert r.status_code == 202
    r = client.put(r.headers["Location"], params={"digest": digest})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    got = client.get(f"/v2/{repo}/blobs/{digest}")
    assert got.headers["Docker-Content-Digest"] == digest
    assert hashlib.sha512(got.content).hexdigest() == digest[7:]
    assert client.head(f"/v2/{repo}/blobs/{sha256(data)}").status_code == 404


def test_mount_from_a_repository_that_has_the_blob(api: Api, client: httpx.Client,
                                                   repo: str) -> None:
    digest = api.blob(f"{repo}/source", b"shared layer")
    r = client.post(f"/v2/{repo}/target/blobs/uploads/",
                    params={"mount": digest, "from": f"{repo}/source"})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == str(
        client.base_url.join(f"/v2/{repo}/target/blobs/{digest}"))
    assert r.headers["Docker-Content-Digest"] == digest
    assert client.get(f"/v2/{repo}/target/blobs/{digest}").content == b"shared layer"


def test_mount_from_a_repository_without_the_blob_opens_a_session(
        api: Api, client: httpx.Client, repo: str) -> None:
    digest = api.blob(f"{repo}/elsewhere", b"not in source")
    api.blob(f"{repo}/source", b"other")
    r = client.post(f"/v2/{repo}/target/blobs/uploads/",
                    params={"mount": digest, "from": f"{repo}/source"})
    assert r.status_code == 202, r.text
    assert "Docker-Upload-UUID" in r.headers
    assert client.head(f"/v2/{repo}/target/blobs/{digest}").status_code == 404
    r = client.put(r.headers["Location"], params={"digest": digest}, content=b"not in source")
    assert r.status_code == 201


def test_mount_without_from_finds_any_blob_of_the_registry(api: Api, client: httpx.Client,
                                                           repo: str) -> None:
    digest = api.blob(f"{repo}/somewhere", b"anywhere in the registry")
    r = client.post(f"/v2/{repo}/target/blobs/uploads/", params={"mount": digest})
    assert r.status_code == 201, r.text
    assert client.head(f"/v2/{repo}/target/blobs/{digest}").status_code == 200
    unknown = sha256(b"nowhere")
    r = client.post(f"/v2/{repo}/target/blobs/uploads/", params={"mount": unknown})
    assert r.status_code == 202
    assert r.headers["Range"] == "0-0"


def test_mount_with_garbage(client: httpx.Client, repo: str) -> None:
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"mount": "sha256:zz", "from": "a"})
    assert r.status_code == 400
    assert error_codes(r) == ["DIGEST_INVALID"]
    r = client.post(f"/v2/{repo}/blobs/uploads/",
                    params={"mount": sha256(b"x"), "from": "UPPER/case"})
    assert r.status_code == 400
    assert error_codes(r) == ["NAME_INVALID"]


def test_concurrent_sessions_of_one_repository(client: httpx.Client, repo: str) -> None:
    datas = [os.urandom(300_000) for _ in range(3)]
    locations = [start_session(client, repo) for _ in datas]
    for location, data in zip(locations, datas, strict=True):
        r = client.patch(location, content=data[:1000], headers={"Content-Range": "0-999"})
        assert r.status_code == 202
    for location, data in zip(locations, datas, strict=True):
        r = client.put(location, params={"digest": sha256(data)}, content=data[1000:],
                       headers={"Content-Range": f"1000-{len(data) - 1}"})
        assert r.status_code == 201, r.text


@pytest.mark.parametrize("workers", [1, 2])
def test_sessions_work_across_connections(registry: RegistryServer, repo: str,
                                          workers: int) -> None:
    data = os.urandom(400_000)
    with registry.client() as first:
        location = start_session(first, repo)
        r = first.patch(location, content=data[:200_000], headers={"Content-Range": "0-199999"})
        assert r.status_code == 202
    for _ in range(workers):
        with registry.client() as other:
            r = other.get(location)
            assert r.status_code == 204
            assert r.headers["Range"] == "0-199999"
    with registry.client() as last:
        r = last.put(location, params={"digest": sha256(data)}, content=data[200_000:],
                     headers={"Content-Range": f"200000-{len(data) - 1}"})
        assert r.status_code == 201, r.text


def test_upload_resumes_after_a_server_restart(tmp_path: Path) -> None:
    root = tmp_path / "root"
    data = os.urandom(3 * 1024 * 1024 + 11)
    half = len(data) // 2
    repo = "resume/app"
    server = RegistryServer(root, workers=1).start()
    try:
        with server.client() as c:
            location = start_session(c, repo)
            r = c.patch(location, content=data[:half], headers={"Content-Range": f"0-{half - 1}"})
            assert r.status_code == 202
    finally:
        server.stop()
    server = RegistryServer(root, workers=2, port=server.port).start()
    try:
        with server.client() as c:
            r = c.get(location)
            assert r.status_code == 204, r.text
            assert r.headers["Range"] == f"0-{half - 1}"
            r = c.patch(location, content=data[half:],
                        headers={"Content-Range": f"{half}-{len(data) - 1}"})
            assert r.status_code == 202, r.text
            r = c.put(r.headers["Location"], params={"digest": sha256(data)})
            assert r.status_code == 201, r.text
            assert c.get(f"/v2/{repo}/blobs/{sha256(data)}").content == data
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def test_commit_cut_short_by_a_crash_is_finished_after_restart(tmp_path: Path) -> None:
    root = tmp_path / "root"
    data = os.urandom(100_000)
    server = RegistryServer(root).start()
    try:
        with server.client() as c:
            location = start_session(c, "crash/app")
            assert c.patch(location, content=data).status_code == 202
    finally:
        server.stop()
    upload_id = location.rsplit("/", 1)[1]
    # The state a crash leaves between publishing the bytes and linking them: the session's
    # journal label names the digest, the bytes are in place, the session is still recorded.
    meta = SqliteMetadataStore(root / "metadata.db")
    try:
        record = meta.get_upload(upload_id)
        assert record is not None
        assert meta.update_upload(upload_id, {**record.labels, "committing": sha256(data)})
    finally:
        meta.close()
    (root / "content" / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    os.rename(root / "content" / "uploads" / upload_id / "data",
              root / "content" / "blobs" / "sha256" / sha256(data).split(":")[1])
    server = RegistryServer(root, port=server.port).start()
    try:
        with server.client() as c:
            r = c.get(location)
            assert r.status_code == 404
            assert error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
            assert c.get(f"/v2/crash/app/blobs/{sha256(data)}").content == data
    finally:
        server.stop()
    meta = SqliteMetadataStore(root / "metadata.db")
    try:
        assert meta.get_upload(upload_id) is None
    finally:
        meta.close()
    assert not (root / "content" / "uploads" / upload_id).exists()
