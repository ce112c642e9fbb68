"""A registry root with users, access rules and images as the release before projects wrote
it, for ``test_auth_legacy_root.py``.

``data/auth-legacy-root.tar.gz`` was made by that release (commit 9ea99a3, run from an
export of it: ``PYTHONPATH=<export> python tests/registry/auth_legacy_root.py make
TARGET``): users added by ``registry user add`` (one in a group), a config file with admins,
groups and rules, images pushed by token-authenticated users over TLS, and
``legacy.json`` recording the actions that release's token endpoint granted each user on
each repository and the digests it served. Run with a newer checkout, ``make`` would record
that checkout's behaviour instead, so the tarball is kept as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import httpx

SERVICE = "pybuild-registry"
MANIFEST_NAME = "legacy.json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
PASSWORDS = {"root": "root-pw", "alice": "alice-pw", "reader": "reader-pw",
             "carol": "carol-pw", "dave": "dave-pw"}
CONFIG = """
admins = ["root"]

[groups]
team-a = ["alice"]

[[access]]
repository = "team-a/*"
groups = ["team-a"]
actions = ["pull", "push", "delete"]

[[access]]
repository = "team-a/*"
users = ["reader"]
actions = ["pull"]

[[access]]
repository = "team-b/*"
users = ["carol"]
actions = ["pull", "push"]

[[access]]
repository = "public/**"
anonymous = true
actions = ["pull"]
"""
REPOSITORIES = ("team-a/app", "team-b/app", "public/app", "public/deep/app", "other/app",
                "solo")
PUSHES = {"team-a/app": "alice", "team-b/app": "carol", "public/app": "root",
          "public/deep/app": "root", "solo": "root"}


def sha256(data: bytes) -> str:
    """The digest string of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def client(url: str, root: Path, token: str | None = None) -> httpx.Client:
    """An HTTPS client of the server trusting its private CA (with ``token``)."""
    context = ssl.create_default_context(cafile=str(root / "tls" / "ca.crt"))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, verify=context, timeout=60, headers=headers)


def token(url: str, root: Path, user: str | None, scope: str) -> dict[str, Any]:
    """The ``/token`` answer for ``user`` (anonymous for ``None``)."""
    auth = None if user is None else (user, PASSWORDS[user])
    with client(url, root) as c:
        r = c.get("/token", params={"service": SERVICE, "scope": scope}, auth=auth)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def grants(url: str, root: Path) -> dict[str, list[str]]:
    """``"user repo"`` → the actions a token asking for all three gets."""
    out = {}
    for user in (None, *PASSWORDS):
        for repo in REPOSITORIES:
            scope = token(url, root, user, f"repository:{repo}:pull,push,delete")["scope"]
            out[f"{user or '-'} {repo}"] = scope.split(":")[-1].split(",") if scope else []
    return out


def push(url: str, root: Path, repo: str, user: str) -> str:
    """Push a one-layer image to ``repo:1`` as ``user``; its manifest digest."""
    layer = f"layer of {repo}".encode() * 100
    config = json.dumps({"architecture": "amd64", "os": "linux", "repo": repo}).encode()
    with client(url, root, token(url, root, user,
                                 f"repository:{repo}:pull,push")["token"]) as c:
        for data in (layer, config):
            r = c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)},
                       content=data)
            assert r.status_code == 201, r.text
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": sha256(layer), "size": len(layer)}]}).encode()
        r = c.put(f"/v2/{repo}/manifests/1", content=manifest,
                  headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201, r.text
    return sha256(manifest)


def make(target: Path) -> None:
    """Make the root with the ``registry`` on ``sys.path`` and pack it into ``target``."""
    from registry.testing.processes import ours

    with tempfile.TemporaryDirectory(prefix="auth-legacy-root-") as tmp:
        base = Path(tmp) / "legacy"
        root = base / "root"
        config = base / "config.toml"
        root.mkdir(parents=True)
        config.write_text(CONFIG)
        for user, password in PASSWORDS.items():
            groups = ["--group", "team-a"] if user == "dave" else []
            subprocess.run([sys.executable, "-m", "registry.cli", "user", "add", user,
                            "--password-stdin", "--root", str(root), *groups],
                           input=f"{password}\n", text=True, check=True)
        server = ours(root, workers=1, tls=True, extra=["--config", str(config)]).start()
        try:
            digests = {repo: push(server.url, root, repo, user)
                       for repo, user in PUSHES.items()}
            described = {"grants": grants(server.url, root), "digests": digests,
                         "files": sorted(str(p.relative_to(root))
                                         for p in root.rglob("*") if p.is_file())}
        finally:
            server.stop()
        (base / MANIFEST_NAME).write_text(json.dumps(described, indent=1) + "\n")
        with tarfile.open(target, "w:gz") as tar:
            tar.add(base, arcname="legacy",
                    filter=lambda info: None if info.name.endswith(".log") else info)


def unpack(tarball: Path, into: Path) -> tuple[Path, dict[str, Any]]:
    """Extract the packed root below ``into``; its directory (``root``, ``config.toml``)
    and what ``legacy.json`` describes."""
    with tarfile.open(tarball) as tar:
        tar.extractall(into, filter="data")
    base = into / "legacy"
    return base, json.loads((base / MANIFEST_NAME).read_text())


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "make":
        sys.exit("usage: python tests/registry/auth_legacy_root.py make TARGET.tar.gz")
    sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(":") if p]
    make(Path(sys.argv[2]).resolve())
