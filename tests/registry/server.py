"""Run ``registry serve`` as a real subprocess for the API tests, and talk to it.

:class:`RegistryServer` starts the server on a free loopback port with a temporary root,
waits until ``/v2/`` answers and stops it by PID. :class:`Api` wraps an ``httpx.Client`` with
the few pushes the tests keep repeating (blobs, images, indexes, artifacts).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from registry.testing.processes import RegistryProcess, free_port

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REPO_ROOT = Path(__file__).resolve().parents[2]


def sha256(data: bytes) -> str:
    """The sha256 digest string of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    """The sha512 digest string of ``data``."""
    return "sha512:" + hashlib.sha512(data).hexdigest()


class RegistryServer(RegistryProcess):
    """One ``registry serve`` process on loopback, configured only by its arguments and
    ``env`` (inherited ``REGISTRY_*`` variables are dropped)."""

    def __init__(self, root: Path | None, *, workers: int = 1, args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None, port: int | None = None,
                 pass_addr: bool = True, log_path: Path | None = None) -> None:
        chosen = not port and pass_addr
        port = port or free_port()
        argv = [sys.executable, "-m", "registry.cli", "serve", "--workers", str(workers)]
        if pass_addr:
            argv += ["--addr", f"127.0.0.1:{port}"]
        if root is not None:
            argv += ["--root", str(root)]
        if log_path is None:
            base = root.parent if root is not None else Path("/tmp")
            log_path = base / f"registry-{os.getpid()}-{port}.log"
        super().__init__([*argv, *args], "127.0.0.1", port, log_path,
                         env={**(env or {}), "PYTHONPATH": str(REPO_ROOT)}, clean_env=True,
                         cwd=REPO_ROOT, port_free=chosen)
        self.root = root

    def client(self, **kwargs: Any) -> httpx.Client:
        """An HTTP client for this server."""
        return httpx.Client(base_url=self.url, timeout=60.0, **kwargs)


@dataclass(frozen=True)
class Pushed:
    """A pushed manifest: its bytes, digest and media type."""

    body: bytes
    digest: str
    media_type: str


class Api:
    """Pushes through the HTTP API, asserting each step succeeded."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def blob(self, repo: str, data: bytes) -> str:
        """Upload ``data`` with one POST (``?digest=``); return its digest."""
        digest = sha256(data)
        r = self.client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest},
                             content=data,
                             headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        return digest

    def manifest(self, repo: str, reference: str, doc: dict[str, Any] | bytes,
                 media_type: str = OCI_MANIFEST, **params: Any) -> httpx.Response:
        """PUT a manifest (any status: the caller checks)."""
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        return self.client.put(f"/v2/{repo}/manifests/{reference}", content=body,
                               headers={"Content-Type": media_type}, params=params)

    def image(self, repo: str, tag: str | None = None, *, layers: int = 1,
              docker: bool = False, seed: str = "", extra: dict[str, Any] | None = None,
              ) -> Pushed:
        """Push a small image (config + ``layers`` random-ish layers) and its manifest."""
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []},
                             "seed": seed}).encode()
        layer_blobs = [f"layer {i} {seed} {tag} {time.time_ns()}".encode() * 50
                       for i in range(layers)]
        self.blob(repo, config)
        for data in layer_blobs:
            self.blob(repo, data)
        media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                       "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": DOCKER_LAYER if docker else OCI_LAYER,
                        "digest": sha256(d), "size": len(d)} for d in layer_blobs],
        }
        doc.update(extra or {})
        body = json.dumps(doc).encode()
        r = self.manifest(repo, tag or sha256(body), body, media_type)
        assert r.status_code == 201, r.text
        return Pushed(body, sha256(body), media_type)

    def index(self, repo: str, tag: str | None, children: Sequence[Pushed], *,
              docker: bool = False, extra: dict[str, Any] | None = None) -> Pushed:
        """Push an index (or manifest list) over pushed manifests."""
        media_type = DOCKER_LIST if docker else OCI_INDEX
        doc: dict[str, Any] = {
            "schemaVersion": 2, "mediaType": media_type,
            "manifests": [{"mediaType": c.media_type, "digest": c.digest, "size": len(c.body),
                           "platform": {"architecture": f"arch{i}", "os": "linux"}}
                          for i, c in enumerate(children)],
        }
        doc.update(extra or {})
        body = json.dumps(doc).encode()
        r = self.manifest(repo, tag or sha256(body), body, media_type)
        assert r.status_code == 201, r.text
        return Pushed(body, sha256(body), media_type)

    def artifact(self, repo: str, subject: Pushed, artifact_type: str,
                 annotations: dict[str, str] | None = None, *,
                 in_config: bool = False) -> Pushed:
        """Push an OCI 1.1 artifact manifest whose ``subject`` is ``subject``; the type goes
        in ``artifactType`` or (``in_config``) in the config's media type."""
        empty = b"{}"
        payload = f"payload {artifact_type} {time.time_ns()}".encode()
        self.blob(repo, empty)
        self.blob(repo, payload)
        doc: dict[str, Any] = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": artifact_type if in_config else OCI_EMPTY,
                       "digest": sha256(empty), "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": sha256(payload),
                        "size": len(payload)}],
            "subject": {"mediaType": subject.media_type, "digest": subject.digest,
                        "size": len(subject.body)},
        }
        if not in_config:
            doc["artifactType"] = artifact_type
        if annotations:
            doc["annotations"] = annotations
        body = json.dumps(doc).encode()
        r = self.manifest(repo, sha256(body), body)
        assert r.status_code == 201, r.text
        assert r.headers["OCI-Subject"] == subject.digest
        return Pushed(body, sha256(body), OCI_MANIFEST)


def error_codes(response: httpx.Response) -> list[str]:
    """The spec error codes of a response body (asserting its shape)."""
    doc = response.json()
    assert isinstance(doc, dict) and isinstance(doc.get("errors"), list), response.text
    for entry in doc["errors"]:
        assert isinstance(entry["code"], str) and isinstance(entry["message"], str)
    return [entry["code"] for entry in doc["errors"]]


class RoleAuthorizer:
    """An authorizer for tests: ``Authorization: Bearer <role>`` where the role is
    ``writer`` (everything), ``reader`` (pull only), ``own:<repository>`` (everything on that
    one repository) or ``busy`` (always TOOMANYREQUESTS); no header is UNAUTHORIZED."""

    async def authorize(self, request: Any, scopes: Sequence[Any]) -> Any:
        from registry.auth.access import Identity
        from registry.errors import DENIED, TOOMANYREQUESTS, UNAUTHORIZED, RegistryError

        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            raise RegistryError(UNAUTHORIZED, "authentication required",
                                headers={"WWW-Authenticate": 'Bearer realm="test"'},
                                detail=[{"Type": s.type, "Name": s.name,
                                         "Action": ",".join(s.actions)} for s in scopes])
        role = header[7:].strip()
        if role == "busy":
            raise RegistryError(TOOMANYREQUESTS, "slow down", headers={"Retry-After": "1"})
        for scope in scopes:
            allowed = (
                role == "writer"
                or (role == "reader" and scope.type == "repository"
                    and set(scope.actions) <= {"pull"})
                or (role == f"own:{scope.name}" and scope.type == "repository")
            )
            if not allowed:
                raise RegistryError(DENIED, f"{role} may not {','.join(scope.actions)} "
                                    f"{scope.type} {scope.name}")
        return Identity(role)


def role_authorizer(settings: object) -> RoleAuthorizer:
    """The factory the ``authorizer`` setting names in the tests."""
    return RoleAuthorizer()
