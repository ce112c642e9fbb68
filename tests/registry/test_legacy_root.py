"""A registry root written by the release before the storage-driver services (blobs in the
layerstore content store, upload bytes in its ``upload-<uuid>`` ingests) is served as it is:
its blobs and manifests read back, range GETs work, and its upload in progress resumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from layerstore.content.local import LocalStore
from layerstore.digest import Digest
from registry.gc import run_cli
from registry.testing.deadline import time_limit
from tests.registry.legacy_root import OTHER, REPO, payload, sha256, unpack
from tests.registry.server import OCI_MANIFEST, RegistryServer

TARBALL = Path(__file__).parent / "data" / "legacy-root.tar.gz"


@pytest.fixture
def legacy(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """The packed root, unpacked."""
    return unpack(TARBALL, tmp_path)


def test_a_legacy_root_is_served(legacy: tuple[Path, dict[str, Any]]) -> None:
    root, described = legacy
    server = RegistryServer(root, workers=2).start()
    try:
        with time_limit(120), server.client() as c:
            for repo, blobs in described["blobs"].items():
                for seed, size in blobs.items():
                    data = payload(int(seed), size)
                    r = c.get(f"/v2/{repo}/blobs/{sha256(data)}")
                    assert r.status_code == 200 and r.content == data, (repo, seed)
                    r = c.head(f"/v2/{repo}/blobs/{sha256(data)}")
                    assert int(r.headers["Content-Length"]) == size
                    r = c.get(f"/v2/{repo}/blobs/{sha256(data)}",
                              headers={"Range": "bytes=100-899"})
                    assert r.status_code == 206 and r.content == data[100:900]
            small = payload(2, 1000)
            assert c.head(f"/v2/{OTHER}/blobs/{sha256(small)}").status_code == 404
            r = c.get(f"/v2/{REPO}/manifests/{described['tag']}",
                      headers={"Accept": OCI_MANIFEST})
            assert r.status_code == 200 and r.text == described["manifest"]
            config = described["config"].encode()
            assert c.get(f"/v2/{REPO}/blobs/{sha256(config)}").content == config

            partial = described["uploads"]["partial"]
            data = payload(partial["seed"], partial["size"])
            offset = partial["offset"]
            r = c.get(partial["path"])
            assert r.status_code == 204, r.text
            assert r.headers["Range"] == f"0-{offset - 1}"
            r = c.patch(partial["path"], content=data[offset:],
                        headers={"Content-Range": f"{offset}-{len(data) - 1}"})
            assert r.status_code == 202, r.text
            assert r.headers["Range"] == f"0-{len(data) - 1}"
            r = c.put(r.headers["Location"], params={"digest": sha256(data)})
            assert r.status_code == 201, r.text
            assert c.get(f"/v2/{REPO}/blobs/{sha256(data)}").content == data

            empty = described["uploads"]["empty"]
            data = payload(empty["seed"], empty["size"])
            r = c.get(empty["path"])
            assert r.status_code == 204 and r.headers["Range"] == "0-0"
            r = c.put(empty["path"], params={"digest": sha256(data)}, content=data)
            assert r.status_code == 201, r.text
            assert c.get(f"/v2/{REPO}/blobs/{sha256(data)}").content == data
            assert c.get(partial["path"]).status_code == 404
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def test_a_legacy_root_is_collected(legacy: tuple[Path, dict[str, Any]],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    root, described = legacy
    assert run_cli(root, ["--grace", "0", "--upload-max-age", "0"]) == 0
    out = capsys.readouterr().out
    assert "blobs: deleted 1 (1000 bytes)" in out and "uploads: purged 2" in out
    assert not list((root / "content" / "ingest").iterdir())
    server = RegistryServer(root).start()
    try:
        with time_limit(120), server.client() as c:
            for upload in described["uploads"].values():
                r = c.get(upload["path"])
                assert r.status_code == 404
                assert [e["code"] for e in r.json()["errors"]] == ["BLOB_UPLOAD_UNKNOWN"]
            manifest = json.loads(described["manifest"])
            for desc in (manifest["config"], *manifest["layers"]):
                r = c.get(f"/v2/{REPO}/blobs/{desc['digest']}")
                assert r.status_code == 200 and sha256(r.content) == desc["digest"]
    finally:
        server.stop()


def test_a_legacy_commit_cut_short_is_finished(legacy: tuple[Path, dict[str, Any]]) -> None:
    """The states an earlier release's crash left mid-commit: the journal names a digest
    that was published (the commit is finished), or one that was not (it is dropped and the
    session resumes)."""
    root, described = legacy
    partial, empty = described["uploads"]["partial"], described["uploads"]["empty"]
    data = payload(partial["seed"], partial["size"])
    partial_id = partial["path"].rsplit("/", 1)[1]
    empty_id = empty["path"].rsplit("/", 1)[1]
    (root / "commits" / partial_id).write_text(sha256(data))
    with LocalStore(root / "content").writer(f"upload-{partial_id}") as writer:
        writer.write(data[partial["offset"]:])
        writer.commit(expected=Digest.parse(sha256(data)))
    (root / "commits" / empty_id).write_text(sha256(b"never published"))
    server = RegistryServer(root).start()
    try:
        with time_limit(120), server.client() as c:
            r = c.get(partial["path"])
            assert r.status_code == 404
            assert [e["code"] for e in r.json()["errors"]] == ["BLOB_UPLOAD_UNKNOWN"]
            assert c.get(f"/v2/{REPO}/blobs/{sha256(data)}").content == data
            r = c.get(empty["path"])
            assert r.status_code == 204 and r.headers["Range"] == "0-0"
    finally:
        server.stop()
    assert not (root / "commits" / partial_id).exists()
    assert not (root / "commits" / empty_id).exists()
    assert "Traceback" not in server.log()
