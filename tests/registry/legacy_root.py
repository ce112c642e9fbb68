"""A registry root as the release before the storage-driver services wrote it, for
``test_legacy_root.py``.

Until then ``registry serve`` kept filesystem blobs in the layerstore content store under
``root/content`` and an upload session's bytes in its ingest ``upload-<uuid>``
(``content/ingest/<sha256 of the ref>/data``). ``data/legacy-root.tar.gz`` was made by that
release (commit 2996332) with::

    python -m tests.registry.legacy_root make tests/registry/data/legacy-root.tar.gz

Run with a newer checkout, ``make`` would record that checkout's layout instead, so the
tarball is kept as it is. Every byte stored is derived from a seed (:func:`payload`); the
tarball's ``legacy.json`` says what was pushed where.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import httpx

from registry.testing.processes import ours

REPO = "legacy/app"
OTHER = "legacy/other"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_NAME = "legacy.json"


def payload(seed: int, size: int) -> bytes:
    """The bytes of blob ``seed`` (a random block repeated: the tarball stays small)."""
    block = random.Random(seed).randbytes(4096)
    return (block * (size // len(block) + 1))[:size]


def sha256(data: bytes) -> str:
    """The digest string of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push(client: httpx.Client) -> dict[str, Any]:
    layer, small = payload(1, 300_000), payload(2, 1_000)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]}}).encode()
    for data in (layer, small, config):
        r = client.post(f"/v2/{REPO}/blobs/uploads/", params={"digest": sha256(data)},
                        content=data)
        assert r.status_code == 201, r.text
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256(layer), "size": len(layer)}],
    }).encode()
    r = client.put(f"/v2/{REPO}/manifests/v1", content=manifest,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    r = client.post(f"/v2/{OTHER}/blobs/uploads/",
                    params={"mount": sha256(layer), "from": REPO})
    assert r.status_code == 201, r.text

    uploads: dict[str, Any] = {}
    for name, seed, size, sent in (("partial", 3, 500_000, 200_000), ("empty", 4, 70_000, 0)):
        r = client.post(f"/v2/{REPO}/blobs/uploads/")
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
        if sent:
            r = client.patch(location, content=payload(seed, size)[:sent],
                             headers={"Content-Range": f"0-{sent - 1}"})
            assert r.status_code == 202, r.text
        uploads[name] = {"path": httpx.URL(location).path, "seed": seed, "size": size,
                         "offset": sent}
    return {
        "blobs": {REPO: {"1": 300_000, "2": 1_000}, OTHER: {"1": 300_000}},
        "config": config.decode(), "manifest": manifest.decode(), "tag": "v1",
        "uploads": uploads,
    }


def make(target: Path) -> None:
    """Serve an empty root with this checkout, push into it, and pack it into ``target``."""
    with tempfile.TemporaryDirectory(prefix="legacy-root-") as tmp:
        root = Path(tmp) / "root"
        server = ours(root, workers=1).start()
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                described = _push(client)
        finally:
            server.stop()
        (root / MANIFEST_NAME).write_text(json.dumps(described, indent=1) + "\n")
        with tarfile.open(target, "w:gz") as tar:
            tar.add(root, arcname="root")


def unpack(tarball: Path, into: Path) -> tuple[Path, dict[str, Any]]:
    """Extract a packed root below ``into``; the root and what ``legacy.json`` describes."""
    with tarfile.open(tarball) as tar:
        tar.extractall(into, filter="data")
    root = into / "root"
    return root, json.loads((root / MANIFEST_NAME).read_text())


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "make":
        sys.exit("usage: python -m tests.registry.legacy_root make TARGET.tar.gz")
    make(Path(sys.argv[2]))
