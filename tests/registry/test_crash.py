"""kill -9 of the registry in the middle of concurrent pushes loses nothing acknowledged,
leaves nothing half-visible, and interrupted uploads resume after the restart."""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from registry.testing.processes import RegistryProcess, ours

CHUNK = 256 * 1024
WORKERS = 6
ROUNDS = 3


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Pusher:
    """One client pushing small images until the server goes away."""

    base: str
    repo: str
    rng: random.Random
    acked_blobs: dict[str, bytes] = field(default_factory=dict)
    acked_tags: dict[str, str] = field(default_factory=dict)
    in_flight: dict[str, bytes] = field(default_factory=dict)
    session: tuple[str, bytes, int] | None = None
    stopped: bool = False

    def upload(self, client: httpx.Client, data: bytes) -> str:
        digest = sha(data)
        self.in_flight[digest] = data
        r = client.post(f"{self.base}/v2/{self.repo}/blobs/uploads/")
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
        offset = 0
        while offset < len(data):
            chunk = data[offset:offset + CHUNK]
            r = client.patch(location, content=chunk, headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
            assert r.status_code == 202, r.text
            offset += len(chunk)
            location = r.headers["Location"]
            self.session = (location, data, offset)
        r = client.put(location, params={"digest": digest})
        assert r.status_code == 201, r.text
        self.session = None
        self.acked_blobs[digest] = data
        del self.in_flight[digest]
        return digest

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            n = 0
            while not self.stopped:
                try:
                    layer = self.rng.randbytes(self.rng.randrange(1, 6) * CHUNK + 17)
                    layer_digest = self.upload(client, layer)
                    config = json.dumps({"architecture": "amd64", "os": "linux", "n": n,
                                         "rootfs": {"type": "layers",
                                                    "diff_ids": [layer_digest]}}).encode()
                    config_digest = self.upload(client, config)
                    manifest = json.dumps({
                        "schemaVersion": 2,
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                   "digest": config_digest, "size": len(config)},
                        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                    "digest": layer_digest, "size": len(layer)}],
                    }).encode()
                    r = client.put(f"{self.base}/v2/{self.repo}/manifests/t{n}", content=manifest,
                                   headers={"Content-Type":
                                            "application/vnd.oci.image.manifest.v1+json"})
                    assert r.status_code == 201, r.text
                    self.acked_tags[f"t{n}"] = sha(manifest)
                    n += 1
                except httpx.HTTPError:
                    return


def _verify(base: str, pusher: Pusher) -> None:
    with httpx.Client(timeout=30) as client:
        for digest, data in pusher.acked_blobs.items():
            r = client.get(f"{base}/v2/{pusher.repo}/blobs/{digest}")
            assert r.status_code == 200 and r.content == data, f"acknowledged {digest} lost"
        for tag, digest in pusher.acked_tags.items():
            r = client.get(f"{base}/v2/{pusher.repo}/manifests/{tag}",
                           headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            assert r.status_code == 200 and sha(r.content) == digest, f"tag {tag} lost"
        for digest, data in pusher.in_flight.items():
            r = client.get(f"{base}/v2/{pusher.repo}/blobs/{digest}")
            assert r.status_code == 404 or r.content == data, f"{digest} half-visible"


def _resume(base: str, pusher: Pusher) -> None:
    """Finish the upload session the crash interrupted, from the offset the server reports."""
    if pusher.session is None:
        return
    location, data, _ = pusher.session
    with httpx.Client(timeout=30) as client:
        r = client.get(location)
        if r.status_code == 404:
            # the crash came after the commit but before the client read the answer
            r = client.get(f"{base}/v2/{pusher.repo}/blobs/{sha(data)}")
            assert r.status_code == 200 and r.content == data
            return
        assert r.status_code == 204, r.text
        offset = int(r.headers["Range"].split("-")[1]) + 1
        assert 0 < offset <= len(data)
        if offset < len(data):
            r = client.patch(location, content=data[offset:], headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{len(data) - 1}"})
            assert r.status_code == 202, r.text
            location = r.headers["Location"]
        r = client.put(location, params={"digest": sha(data)})
        assert r.status_code == 201, r.text
        r = client.get(f"{base}/v2/{pusher.repo}/blobs/{sha(data)}")
        assert r.content == data


def test_kill_9_during_concurrent_pushes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    server: RegistryProcess = ours(root).start()
    rng = random.Random(1234)
    pushers: list[Pusher] = []
    try:
        for round_ in range(ROUNDS):
            current = [Pusher(server.url, f"crash/r{round_}/w{i}", random.Random(rng.random()))
                       for i in range(WORKERS)]
            threads = [threading.Thread(target=p.run) for p in current]
            for t in threads:
                t.start()
            time.sleep(1.0 + rng.random() * 2)
            server.kill()
            for p in current:
                p.stopped = True
            for t in threads:
                t.join(timeout=60)
            pushers.extend(current)
            server = ours(root, port=server.port).start()
            for p in pushers:
                _verify(server.url, p)
            for p in current:
                _resume(server.url, p)
        assert sum(len(p.acked_tags) for p in pushers) > 0
        for p in pushers:
            _verify(server.url, p)
    finally:
        server.stop()
    for blob in (root / "content" / "blobs" / "sha256").iterdir():
        assert blob.name == hashlib.sha256(blob.read_bytes()).hexdigest(), f"{blob} is torn"
