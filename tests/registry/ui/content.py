"""What the web UI tests push: images with chosen config fields, labels and history lines
(hostile ones too), and a referrers tree, through the registry's HTTP API."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from tests.registry.server import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Api, Pushed, sha256

HOSTILE_SCRIPT = "<script>alert('label')</script>"
HOSTILE_IMG = '"><img src=x onerror=alert(1)>'
SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM = "application/spdx+json"
ATTESTATION = "application/vnd.in-toto+json"


@dataclass(frozen=True)
class Image:
    """A pushed image: its manifest and the layer sizes."""

    pushed: Pushed
    layer_sizes: tuple[int, ...]


def push_image(client: httpx.Client, repo: str, tag: str, *, history: list[str],
               labels: dict[str, str] | None = None, env: list[str] | None = None,
               cmd: list[str] | None = None, user: str = "",
               ports: list[str] | None = None) -> Image:
    """Push an image with one layer per history line (and an ``ENV`` line without one)."""
    api = Api(client)
    layers = [f"{repo} {tag} layer {i} {time.time_ns()}\n".encode() * (40 * (i + 1))
              for i in range(len(history))]
    entries: list[dict[str, Any]] = []
    for line in history:
        entries.append({"created": "2026-01-02T03:04:05Z", "created_by": line})
    entries.insert(1, {"created": "2026-01-02T03:04:05Z", "created_by": "ENV MODE=ui",
                       "empty_layer": True})
    config_fields: dict[str, Any] = {"Env": env or ["PATH=/usr/bin:/bin"],
                                     "Cmd": cmd or ["sh"], "Labels": labels or {}}
    if user:
        config_fields["User"] = user
    if ports:
        config_fields["ExposedPorts"] = {p: {} for p in ports}
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2026-01-02T03:04:05Z",
        "config": config_fields,
        "rootfs": {"type": "layers", "diff_ids": [sha256(d) for d in layers]},
        "history": entries}).encode()
    api.blob(repo, config)
    for data in layers:
        api.blob(repo, data)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
           "layers": [{"mediaType": OCI_LAYER, "digest": sha256(d), "size": len(d)}
                      for d in layers]}
    body = json.dumps(doc).encode()
    r = api.manifest(repo, tag, body)
    assert r.status_code == 201, r.text
    return Image(Pushed(body, sha256(body), OCI_MANIFEST), tuple(len(d) for d in layers))


def push_referrers(client: httpx.Client, repo: str, subject: Pushed) -> list[Pushed]:
    """A signature and an SBOM of ``subject``, and an attestation of the SBOM."""
    api = Api(client)
    signature = api.artifact(repo, subject, SIGNATURE, {"dev.example/signer": "ci"})
    sbom = api.artifact(repo, subject, SBOM)
    attestation = api.artifact(repo, sbom, ATTESTATION)
    return [signature, sbom, attestation]
