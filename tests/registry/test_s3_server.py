"""``registry serve`` with ``storage = "s3"`` on a real Ceph RGW: uploads whose chunks land
on two server processes (replicas sharing the bucket and the metadata), ranged GETs,
presigned redirects, mounts that copy no bytes, start-up refusal of a misconfigured backend,
503 answers when the backend fails at run time, and skopeo pushing and pulling."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from registry.testing.deadline import time_limit
from registry.testing.engines import REGION, RgwEngine
from registry.testing.processes import free_port
from tests.peers import require
from tests.registry.server import REPO_ROOT, Api, RegistryServer, sha256, sha512

MIB = 1024 * 1024
TIMEOUT = 300


@pytest.fixture(autouse=True)
def deadline() -> Iterator[None]:
    """Fail a case that runs longer than TIMEOUT seconds instead of hanging the session."""
    with time_limit(TIMEOUT):
        yield


def s3_env(engine: RgwEngine, **extra: str) -> dict[str, str]:
    """The environment of a server on ``engine``'s bucket under a fresh prefix."""
    return {**engine.settings(), "REGISTRY_S3_PREFIX": f"srv-{uuid.uuid4().hex[:10]}",
            **extra}


def bucket_client(engine: RgwEngine) -> object:
    """A plain boto3 client of the RGW (to look at what the registry stored)."""
    return boto3.session.Session(
        aws_access_key_id=engine.access_key, aws_secret_access_key=engine.secret_key,
    ).client("s3", endpoint_url=engine.endpoint, region_name=REGION)


def keys(engine: RgwEngine, prefix: str, bucket: str | None = None) -> list[str]:
    """Every object key under ``prefix``."""
    client = bucket_client(engine)
    out: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(  # type: ignore[attr-defined]
            Bucket=bucket or engine.bucket, Prefix=prefix + "/"):
        out.extend(o["Key"] for o in page.get("Contents", ()))
    return sorted(out)


@pytest.fixture(scope="module")
def replicas(rgw: RgwEngine, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[RegistryServer, RegistryServer, dict[str, str]]]:
    """Two ``registry serve`` processes on one bucket prefix and one metadata store."""
    root = tmp_path_factory.mktemp("s3") / "root"
    env = s3_env(rgw)
    a = RegistryServer(root, env=env).start()
    b = RegistryServer(root, env=env).start()
    yield a, b, env
    a.stop()
    b.stop()


def payload(size: int, seed: str = "") -> bytes:
    """Reproducible bytes."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha512(f"{seed}{i}".encode()).digest() * 16
        i += 1
    return bytes(out[:size])


def test_chunks_on_two_replicas_make_one_blob(replicas, rgw: RgwEngine) -> None:
    a, b, env = replicas
    repo = f"s3/{uuid.uuid4().hex[:8]}"
    data = payload(13 * MIB + 12345, "replicas")
    sizes = [3 * MIB, 4 * MIB, 1, 6 * MIB - 1, 12345]
    with a.client() as ca, b.client() as cb:
        r = ca.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202
        location = r.headers["Location"]
        path = httpx.URL(location).path
        pos = 0
        for i, size in enumerate(sizes):
            client = (ca, cb)[i % 2]
            r = client.patch(path, content=data[pos:pos + size], headers={
                "Content-Range": f"{pos}-{pos + size - 1}",
                "Content-Type": "application/octet-stream"})
            assert r.status_code == 202, r.text
            pos += size
            assert r.headers["Range"] == f"0-{pos - 1}"
            status = (cb, ca)[i % 2].get(path)
            assert status.status_code == 204 and status.headers["Range"] == f"0-{pos - 1}"
        assert pos == len(data)
        r = ca.put(path, params={"digest": sha256(data)})
        assert r.status_code == 201, r.text
        for client in (ca, cb):
            got = client.get(f"/v2/{repo}/blobs/{sha256(data)}")
            assert got.status_code == 200
            assert hashlib.sha256(got.content).hexdigest() == sha256(data)[7:]
        assert cb.get(path).status_code == 404
    prefix = env["REGISTRY_S3_PREFIX"]
    stored = keys(rgw, prefix)
    assert f"{prefix}/blobs/sha256/{sha256(data)[7:]}" in stored
    assert not [k for k in stored if "/uploads/" in k or "/_pending/" in k]


def test_running_hash_and_read_back_agree(replicas) -> None:
    a, b, _ = replicas
    repo = f"s3/{uuid.uuid4().hex[:8]}"
    data = payload(6 * MIB + 7, "hash")
    with a.client() as ca, b.client() as cb:
        for closer, algorithm in ((ca, sha256), (cb, sha256), (cb, sha512)):
            path = httpx.URL(ca.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]).path
            assert ca.patch(path, content=data).status_code == 202
            r = closer.put(path, params={"digest": algorithm(data)})
            assert r.status_code == 201, r.text
            assert cb.head(f"/v2/{repo}/blobs/{algorithm(data)}").headers[
                "Content-Length"] == str(len(data))


def test_digest_mismatch_stores_nothing(replicas, rgw: RgwEngine) -> None:
    a, b, env = replicas
    repo = f"s3/{uuid.uuid4().hex[:8]}"
    data = payload(5 * MIB + 3, "bad")
    wrong = sha256(b"something else")
    with a.client() as ca, b.client() as cb:
        path = httpx.URL(ca.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]).path
        assert ca.patch(path, content=data).status_code == 202
        r = cb.put(path, params={"digest": wrong})
        assert r.status_code == 400
        assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"
        assert ca.get(f"/v2/{repo}/blobs/{wrong}").status_code == 404
        assert ca.get(path).status_code == 404
        r = ca.post(f"/v2/{repo}/blobs/uploads/", params={"digest": wrong}, content=b"x")
        assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    stored = keys(rgw, env["REGISTRY_S3_PREFIX"])
    assert not [k for k in stored if wrong[7:] in k or "/uploads/" in k or "/_pending/" in k]


def test_api_on_s3(replicas) -> None:
    a, _, _ = replicas
    repo = f"s3/{uuid.uuid4().hex[:8]}"
    with a.client() as client:
        api = Api(client)
        data = payload(200_000, "ranged")
        digest = api.blob(repo, data)
        r = client.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=100-199"})
        assert r.status_code == 206 and r.content == data[100:200]
        assert r.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
        r = client.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=-10"})
        assert r.content == data[-10:]
        pushed = api.image(repo, "v1")
        r = client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": pushed.media_type})
        assert r.status_code == 200 and r.content == pushed.body
        assert client.delete(f"/v2/{repo}/manifests/{pushed.digest}").status_code == 202
        assert client.get(f"/v2/{repo}/manifests/v1").status_code == 404
        small = b"tiny blob"
        api.blob(repo, small)
        assert client.get(f"/v2/{repo}/blobs/{sha256(small)}").content == small


def test_mount_copies_no_bytes(replicas, rgw: RgwEngine) -> None:
    a, _, env = replicas
    source, target = f"s3/{uuid.uuid4().hex[:8]}", f"s3/{uuid.uuid4().hex[:8]}"
    data = payload(300_000, "mount")
    with a.client() as client:
        digest = Api(client).blob(source, data)
        before = keys(rgw, env["REGISTRY_S3_PREFIX"])
        r = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": digest,
                                                                "from": source})
        assert r.status_code == 201
        assert client.get(f"/v2/{target}/blobs/{digest}").content == data
        assert keys(rgw, env["REGISTRY_S3_PREFIX"]) == before
        r = client.post(f"/v2/{target}/blobs/uploads/",
                        params={"mount": sha256(b"absent"), "from": source})
        assert r.status_code == 202


def test_redirect_sends_clients_to_presigned_urls(rgw: RgwEngine, tmp_path: Path
                                                  ) -> None:
    env = s3_env(rgw, REGISTRY_S3_REDIRECT="true")
    server = RegistryServer(tmp_path / "root", env=env).start()
    try:
        with server.client() as client:
            repo = "s3/redirect"
            data = payload(100_000, "redirect")
            digest = Api(client).blob(repo, data)
            r = client.get(f"/v2/{repo}/blobs/{digest}")
            assert r.status_code == 307
            assert "X-Amz-Signature=" in r.headers["Location"]
            assert httpx.get(r.headers["Location"], timeout=30).content == data
            ranged = httpx.get(r.headers["Location"], headers={"Range": "bytes=5-9"},
                               timeout=30)
            assert ranged.status_code == 206 and ranged.content == data[5:10]
            assert client.head(f"/v2/{repo}/blobs/{digest}").status_code == 200
    finally:
        server.stop()


def _serve(env: dict[str, str], root: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("REGISTRY_", "AWS_"))}
    return subprocess.run(
        [sys.executable, "-m", "registry.cli", "serve", "--root", str(root), "--addr",
         f"127.0.0.1:{free_port()}"], env={**clean, **env, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)


def test_unknown_bucket_stops_serve_at_once(rgw: RgwEngine, tmp_path: Path) -> None:
    proc = _serve(s3_env(rgw, REGISTRY_S3_BUCKET="no-such-bucket"), tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "s3.bucket" in lines[0] and "no-such-bucket" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_bad_credentials_stop_serve_at_once(rgw: RgwEngine, tmp_path: Path) -> None:
    proc = _serve(s3_env(rgw, AWS_SECRET_ACCESS_KEY="wrong-secret"), tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "s3 credentials" in lines[0], proc.stderr


def test_unreachable_endpoint_stops_serve_at_once(tmp_path: Path) -> None:
    env = {"REGISTRY_STORAGE": "s3", "REGISTRY_S3_BUCKET": "b", "REGISTRY_S3_PATH_STYLE": "1",
           "REGISTRY_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}",
           "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    proc = _serve(env, tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "s3.endpoint" in lines[0], proc.stderr


def test_backend_failure_answers_503(rgw: RgwEngine, tmp_path: Path) -> None:
    bucket = f"gone-{uuid.uuid4().hex[:8]}"
    client = bucket_client(rgw)
    client.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    env = s3_env(rgw, REGISTRY_S3_BUCKET=bucket)
    server = RegistryServer(tmp_path / "root", env=env).start()
    try:
        with server.client() as http:
            repo = "s3/failing"
            data = payload(200_000, "gone")
            digest = Api(http).blob(repo, data)
            path = httpx.URL(http.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]).path
            for key in keys(rgw, env["REGISTRY_S3_PREFIX"], bucket):
                client.delete_object(Bucket=bucket, Key=key)  # type: ignore[attr-defined]
            client.delete_bucket(Bucket=bucket)  # type: ignore[attr-defined]
            for response in (
                http.get(f"/v2/{repo}/blobs/{digest}"),
                http.patch(path, content=payload(6 * MIB, "more")),
                http.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(b"x")},
                          content=b"x"),
            ):
                assert response.status_code == 503, response.text
                assert response.headers["Retry-After"]
                assert response.json()["errors"][0]["code"] == "UNAVAILABLE"
        assert "Traceback" not in server.log_path.read_text()
    finally:
        server.stop()


def test_skopeo_pushes_and_pulls(replicas, busybox_rootfs: Path, tmp_path: Path) -> None:
    from layerstore.content.local import LocalStore
    from tests.registry.images import busybox_image, layout_of

    a, b, _ = replicas
    store = LocalStore(tmp_path / "store")
    image = busybox_image(store, busybox_rootfs)
    layout = layout_of(tmp_path / "layout", store, {"base": image.manifest})
    skopeo = require("skopeo")
    ref_a = f"docker://{a.address}/s3/skopeo:1"
    ref_b = f"docker://{b.address}/s3/skopeo:1"
    run = [skopeo, "copy", "--dest-tls-verify=false", f"oci:{layout}:base", ref_a]
    proc = subprocess.run(run, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    proc = subprocess.run([skopeo, "copy", "--src-tls-verify=false", ref_b,
                           f"oci:{out}:copy"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == str(image.manifest.digest)


def test_gc_sweeps_the_bucket(rgw: RgwEngine, tmp_path: Path) -> None:
    env = s3_env(rgw)
    prefix = env["REGISTRY_S3_PREFIX"]
    root = tmp_path / "root"
    server = RegistryServer(root, env=env).start()
    try:
        with server.client() as http:
            api = Api(http)
            kept = api.image("s3/gc", "v1")
            loose = api.blob("s3/gc", payload(70_000, "loose"))
            path = httpx.URL(http.post("/v2/s3/gc/blobs/uploads/").headers["Location"]).path
            assert http.patch(path, content=payload(6 * MIB + 1, "stale")).status_code == 202
            # A short chunk always leaves pending bytes (a part needs 5 MiB).
            assert http.patch(path, content=b"x", headers={
                "Content-Range": f"{6 * MIB + 1}-{6 * MIB + 1}"}).status_code == 202
    finally:
        server.stop()
    assert [k for k in keys(rgw, prefix) if "/uploads/" in k or "/_pending/" in k]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "AWS_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "registry.cli", "gc", "--root", str(root), "--grace", "0",
         "--upload-max-age", "0"], env={**clean, **env, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "uploads: purged 1" in proc.stdout, proc.stdout
    stored = keys(rgw, prefix)
    assert f"{prefix}/blobs/sha256/{loose[7:]}" not in stored
    assert f"{prefix}/blobs/sha256/{kept.digest[7:]}" in stored
    assert not [k for k in stored if "/uploads/" in k or "/_pending/" in k]
    server = RegistryServer(root, env=env).start()
    try:
        with server.client() as http:
            assert http.get(f"/v2/s3/gc/manifests/{kept.digest}").content == kept.body
            assert http.head(f"/v2/s3/gc/blobs/{loose}").status_code == 404
    finally:
        server.stop()


def test_upload_survives_a_restart(rgw: RgwEngine, tmp_path: Path) -> None:
    env = s3_env(rgw)
    root = tmp_path / "root"
    data = payload(7 * MIB + 5, "restart")
    server = RegistryServer(root, env=env).start()
    try:
        with server.client() as http:
            path = httpx.URL(http.post("/v2/s3/restart/blobs/uploads/").headers["Location"]).path
            assert http.patch(path, content=data[:5 * MIB + 3]).status_code == 202
    finally:
        server.stop()
    server = RegistryServer(root, env=env).start()
    try:
        with server.client() as http:
            assert http.get(path).headers["Range"] == f"0-{5 * MIB + 2}"
            r = http.put(path, params={"digest": sha256(data)}, content=data[5 * MIB + 3:],
                         headers={"Content-Range": f"{5 * MIB + 3}-{len(data) - 1}"})
            assert r.status_code == 201, r.text
            assert http.get(f"/v2/s3/restart/blobs/{sha256(data)}").content == data
    finally:
        server.stop()


def test_commit_interrupted_after_completing_the_upload(rgw: RgwEngine,
                                                        tmp_path: Path) -> None:
    """A crash between completing the multipart upload and the commit journal leaves the
    whole upload object; the next closing PUT verifies and publishes it."""
    from registry.metadata.sqlite import SqliteMetadataStore
    from registry.storage.paths import upload_path
    from tests.registry.rgw import s3_driver

    env = s3_env(rgw)
    root = tmp_path / "root"
    data = payload(6 * MIB + 99, "interrupted")
    server = RegistryServer(root, env=env).start()
    try:
        with server.client() as http:
            path = httpx.URL(http.post("/v2/s3/crash/blobs/uploads/").headers["Location"]).path
            assert http.patch(path, content=data[:-99]).status_code == 202
            # A short chunk always leaves pending bytes (a part needs 5 MiB).
            assert http.patch(path, content=data[-99:], headers={
                "Content-Range": f"{len(data) - 99}-{len(data) - 1}"}).status_code == 202
            upload_id = path.rsplit("/", 1)[-1]
            meta = SqliteMetadataStore(root / "metadata.db")
            record = meta.get_upload(upload_id)
            meta.close()
            assert record is not None and record.labels["buffered"] != "0"
            driver = s3_driver(rgw, prefix=env["REGISTRY_S3_PREFIX"])
            driver.writer(upload_path(upload_id), append=True, state=record.labels).commit()
            # The crash came before the pending bytes were deleted, too.
            buffered = int(record.labels["buffered"])
            driver.client.put_object(Bucket=rgw.bucket, Body=data[-buffered:],
                                     Key=driver.pending_key(upload_path(upload_id)))
            r = http.put(path, params={"digest": sha256(data)})
            assert r.status_code == 201, r.text
            assert http.get(f"/v2/s3/crash/blobs/{sha256(data)}").content == data
            assert http.get(path).status_code == 404
    finally:
        server.stop()
    stored = keys(rgw, env["REGISTRY_S3_PREFIX"])
    assert not [k for k in stored if "/uploads/" in k or "/_pending/" in k], stored


def test_stateless_replicas_on_s3_and_postgresql(rgw: RgwEngine, postgres,
                                                 tmp_path: Path) -> None:
    """Two servers that share no disk (each its own root), only the bucket and a PostgreSQL
    database: an upload's chunks and its closing PUT alternate between them, and each
    serves what the other stored."""
    env = {**s3_env(rgw), "REGISTRY_METADATA_URL": postgres.create_database("scaleout")}
    a = RegistryServer(tmp_path / "a", env=env).start()
    b = RegistryServer(tmp_path / "b", env=env).start()
    try:
        data = payload(11 * MIB + 3, "scale-out")
        with a.client() as ca, b.client() as cb:
            repo = "s3/scaleout"
            path = httpx.URL(ca.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]).path
            pos = 0
            for i, size in enumerate((4 * MIB, 5 * MIB + 1, 2 * MIB + 2)):
                client = (cb, ca)[i % 2]
                r = client.patch(path, content=data[pos:pos + size], headers={
                    "Content-Range": f"{pos}-{pos + size - 1}"})
                assert r.status_code == 202, r.text
                pos += size
            assert ca.get(path).headers["Range"] == f"0-{pos - 1}"
            r = cb.put(path, params={"digest": sha256(data)})
            assert r.status_code == 201, r.text
            assert ca.get(f"/v2/{repo}/blobs/{sha256(data)}").content == data
            pushed = Api(cb).image(repo, "v1")
            assert ca.get(f"/v2/{repo}/manifests/v1").content == pushed.body
            assert ca.get(f"/v2/{repo}/tags/list").json()["tags"] == ["v1"]
        assert not (tmp_path / "a" / "content" / "blobs").exists()
        assert not (tmp_path / "a" / "metadata.db").exists()
    finally:
        a.stop()
        b.stop()
