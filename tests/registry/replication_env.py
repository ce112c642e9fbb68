"""What the replication tests share: registries on loopback (ours and CNCF distribution),
the ``registry replicate`` command run as a program, and checks that an image arrived
whole (every manifest, blob and referrer)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.registry.server import OCI_INDEX, REPO_ROOT, Pushed

TIMEOUT = 120


@dataclass(frozen=True)
class Cli:
    """``registry replicate …`` on the root of one of our registries, with its own docker
    config (credentials) and client settings."""

    root: Path
    docker_config: Path

    def env(self) -> dict[str, str]:
        """The environment of the command."""
        daemon = self.docker_config / "daemon.json"
        if not daemon.exists():
            daemon.parent.mkdir(parents=True, exist_ok=True)
            daemon.write_text("{}")
        keep = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        return {**keep, "PYTHONPATH": str(REPO_ROOT), "DOCKER_CONFIG": str(self.docker_config),
                "PYBUILD_DAEMON_CONFIG": str(daemon)}

    def argv(self, *args: str) -> list[str]:
        """The command line of ``registry replicate ARGS``."""
        return [sys.executable, "-m", "registry.cli", "replicate", *args[:1], "--root",
                str(self.root), *args[1:]]

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        """Run it; assert success (or failure with ``ok=False``)."""
        done = subprocess.run(self.argv(*args), capture_output=True, text=True,
                              env=self.env(), timeout=TIMEOUT, cwd=REPO_ROOT)
        if ok:
            assert done.returncode == 0, done.stderr + done.stdout
        else:
            assert done.returncode != 0, done.stdout
        return done

    def json(self, *args: str) -> Any:
        """Run it with ``--json``; the parsed output."""
        return json.loads(self(*args, "--json").stdout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start it without waiting."""
        return subprocess.Popen(self.argv(*args), env=self.env(), cwd=REPO_ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def manifest(client: httpx.Client, repo: str, reference: str) -> httpx.Response:
    """GET a manifest (any type)."""
    return client.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": ", ".join((
        OCI_INDEX, "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json"))})


def assert_arrived(source: httpx.Client, target: httpx.Client, repo: str, tag: str) -> None:
    """The tag names the same manifest bytes on both sides, and everything it names (index
    children, configs, layers) is on the target."""
    want = manifest(source, repo, tag)
    got = manifest(target, repo, tag)
    assert want.status_code == 200, want.text
    assert got.status_code == 200, f"{repo}:{tag} missing on the target: {got.text}"
    assert got.content == want.content
    _assert_contents(target, repo, got.content)


def _assert_contents(target: httpx.Client, repo: str, raw: bytes) -> None:
    doc = json.loads(raw)
    for child in doc.get("manifests", []):
        r = manifest(target, repo, child["digest"])
        assert r.status_code == 200, f"{repo}@{child['digest']} missing: {r.text}"
        _assert_contents(target, repo, r.content)
    for blob in [doc.get("config"), *doc.get("layers", [])]:
        if blob is None:
            continue
        r = target.head(f"/v2/{repo}/blobs/{blob['digest']}")
        assert r.status_code == 200, f"blob {blob['digest']} of {repo} missing"


def referrer_digests(client: httpx.Client, repo: str, subject: Pushed) -> set[str]:
    """The referrers of ``subject`` the registry lists: through the referrers API, or the
    ``sha256-<hex>`` fallback tag where the API is missing."""
    r = client.get(f"/v2/{repo}/referrers/{subject.digest}")
    if r.status_code == 200 and r.headers.get("content-type", "").startswith(OCI_INDEX):
        return {m["digest"] for m in r.json()["manifests"]}
    fallback = manifest(client, repo, subject.digest.replace(":", "-"))
    if fallback.status_code != 200:
        return set()
    return {m["digest"] for m in fallback.json()["manifests"]}


def upload_count(client: httpx.Client) -> int:
    """Blob uploads our registry completed (from its ``/metrics``)."""
    text = client.get("/metrics").text
    total = 0
    for line in text.splitlines():
        if line.startswith("registry_http_requests_total{") and 'status="201"' in line and (
                'method="PUT",route="uploads"' in line
                or 'method="POST",route="upload_start"' in line):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total
