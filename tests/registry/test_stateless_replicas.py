"""Stateless replicas: two ``registry serve`` processes with separate, empty roots (as on two
hosts) over one real PostgreSQL (metadata, users, signing key) and one real Ceph RGW bucket
(blobs, upload state). Whatever one replica did, the other serves; a collection run from a
third place sweeps what nobody refers to while both serve."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.testing.deadline import time_limit
from registry.testing.engines import PostgresEngine, RgwEngine
from tests.registry.server import REPO_ROOT, Api, RegistryServer, sha256

TIMEOUT = 300
PASSWORD = "replica-password"


@pytest.fixture(autouse=True)
def deadline() -> Iterator[None]:
    """Fail a case that runs longer than TIMEOUT seconds instead of hanging the session."""
    with time_limit(TIMEOUT):
        yield


def _registry(env: dict[str, str], *args: str, input: str | None = None) -> str:
    proc = subprocess.run([sys.executable, "-m", "registry.cli", *args], input=input,
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), **env})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _token(server: RegistryServer, repo: str) -> str:
    with server.client() as c:
        got = c.get("/token", params={"service": "pybuild-registry",
                                      "scope": f"repository:{repo}:pull,push,delete"},
                    auth=("ci", PASSWORD))
        assert got.status_code == 200, got.text
        return str(got.json()["token"])


def test_two_replicas_share_everything(tmp_path: Path, postgres: PostgresEngine,
                                       rgw: RgwEngine) -> None:
    env = {**rgw.settings(), "REGISTRY_S3_PREFIX": f"replicas-{uuid.uuid4().hex[:8]}",
           "REGISTRY_METADATA_URL": postgres.create_database("replicas"),
           "REGISTRY_ACCESS": json.dumps(
               [{"repository": "**", "users": ["ci"], "actions": ["pull", "push", "delete"]}])}
    _registry(env, "migrate", "--root", str(tmp_path / "admin"))
    _registry(env, "user", "add", "ci", "--password-stdin", "--root", str(tmp_path / "admin"),
              input=PASSWORD + "\n")
    args = ("--auth", "token")
    repo = "team/app"
    with RegistryServer(tmp_path / "host-a", args=args, env=env, workers=2) as a, \
            RegistryServer(tmp_path / "host-b", args=args, env=env, workers=2) as b:
        token = _token(a, repo)  # issued by A, accepted by B (one signing key)
        bearer = {"Authorization": f"Bearer {token}"}
        with a.client(headers=bearer) as ca, b.client(headers=bearer) as cb:
            # A chunked upload begun on A, continued on B, finished on A.
            data = hashlib.sha256(b"seed").digest() * 200_000  # 6.4 MB
            start = ca.post(f"/v2/{repo}/blobs/uploads/")
            assert start.status_code == 202, start.text
            location = start.headers["location"]
            half = len(data) // 2
            first = cb.patch(location, content=data[:half],
                             headers={"Content-Range": f"0-{half - 1}"})
            assert first.status_code == 202, first.text
            done = ca.put(first.headers["location"], params={"digest": sha256(data)},
                          content=data[half:])
            assert done.status_code == 201, done.text
            kept = Api(ca).image(repo, "kept")
            gone = Api(cb).image(repo, "gone", seed="gone")
            assert cb.get(f"/v2/{repo}/blobs/{sha256(data)}").content == data
            assert cb.get(f"/v2/{repo}/manifests/kept").content == kept.body
            assert ca.get(f"/v2/{repo}/manifests/gone").content == gone.body
            assert cb.get(f"/v2/{repo}/tags/list").json()["tags"] == ["gone", "kept"]
            assert cb.delete(f"/v2/{repo}/manifests/{gone.digest}").status_code == 202
            assert ca.get(f"/v2/{repo}/tags/list").json()["tags"] == ["kept"]
            assert ca.delete(f"/v2/{repo}/blobs/{sha256(data)}").status_code == 202

            # Garbage collection from a third place, while both replicas serve.
            report = _registry(env, "gc", "--root", str(tmp_path / "admin"), "--grace", "0")
            assert "blobs: deleted 4 " in report, report  # the loose blob + gone's 3
            for client in (ca, cb):
                assert client.get(f"/v2/{repo}/manifests/kept").content == kept.body
                config = json.loads(kept.body)["config"]["digest"]
                assert client.get(f"/v2/{repo}/blobs/{config}").status_code == 200
                assert client.get(f"/v2/{repo}/manifests/{gone.digest}").status_code == 404
    for host in ("host-a", "host-b"):
        assert not (tmp_path / host / "metadata.db").exists()
        assert not (tmp_path / host / "content").exists()
        assert not (tmp_path / host / "auth").exists()
