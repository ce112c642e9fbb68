"""The client against our registry over TLS with token auth: push, pull (by tag, by
digest, an index for one platform), cross-repository mounts, anonymous pulls, credentials
from the docker config, wrong credentials, unknown images and expiring tokens."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from layerstore.content.local import LocalStore
from layerstore.oci import Descriptor, MediaType, Platform
from layerstore.walk import load_manifest, reachable
from registry.auth.tokens import KEY_FILE
from registry.client import (
    BlobProgress,
    NotFound,
    PlatformNotFound,
    Transport,
    Unauthorized,
    head_manifest,
    list_tags,
    parse_reference,
    pull,
    push,
    store,
)
from tests.registry.client.conftest import (
    Images,
    StaticCredentials,
    requests_in_log,
    trusting_settings,
)
from tests.registry.test_auth_server import CONFIG, PASSWORDS, AuthServer, start_auth_server

AMD64 = Platform(architecture="amd64", os="linux")
ARM64 = Platform(architecture="arm64", os="linux")


def blob_bytes(store_: LocalStore, desc: Descriptor) -> bytes:
    """A small or large blob read whole (test images are small)."""
    with store_.reader(desc.digest) as f:
        return f.read()


def assert_same_blobs(src: LocalStore, dst: LocalStore, root: Descriptor) -> None:
    """Every blob reachable from ``root`` in ``dst`` is byte-identical to ``src``'s."""
    for desc in reachable(dst, root):
        assert blob_bytes(dst, desc) == blob_bytes(src, desc), desc.digest


def test_push_then_pull_by_tag_and_by_digest(ours: AuthServer, images: Images,
                                              tmp_path: Path) -> None:
    settings = trusting_settings(tmp_path, ours.address, ours.ca)
    store(ours.address, "alice", PASSWORDS["alice"], settings.docker_config)
    repo = f"team-a/app-{uuid.uuid4().hex[:8]}"
    ref = f"{ours.address}/{repo}:v1"
    events: list[BlobProgress] = []
    digest = push(images.store, images.app.manifest, ref, settings, progress=events.append)
    assert digest == images.app.manifest.digest
    finished = {e.digest: e.state for e in events if e.finished}
    assert set(finished.values()) == {"pushed"} and len(finished) == 3
    assert head_manifest(ref, settings).digest == digest  # type: ignore[union-attr]
    assert list_tags(ref, settings) == ["v1"]

    fresh = LocalStore(tmp_path / "pulled")
    pulled = pull(ref, fresh, AMD64, settings)
    assert pulled.target == pulled.manifest and pulled.index is None
    assert pulled.manifest.digest == digest
    assert pulled.config == images.app.config
    source = load_manifest(images.store, images.app.manifest)
    assert pulled.parsed == source and len(pulled.parsed.layers) == 2
    assert pulled.source == f"https://{ours.address}"
    assert_same_blobs(images.store, fresh, pulled.manifest)
    assert fresh.list_statuses() == []

    again: list[BlobProgress] = []
    by_digest = pull(f"{ours.address}/{repo}@{digest}", fresh, AMD64, settings,
                     progress=again.append)
    assert by_digest.manifest.digest == digest
    assert {e.state for e in again} == {"exists"}


def test_pull_an_index_for_one_platform(ours: AuthServer, images: Images,
                                        tmp_path: Path) -> None:
    settings = trusting_settings(tmp_path, ours.address, ours.ca)
    creds = StaticCredentials("root", PASSWORDS["root"])
    ref = f"{ours.address}/team-b/multi:1"
    assert push(images.store, images.multi, ref, settings, credentials=creds) == \
        images.multi.digest

    fresh = LocalStore(tmp_path / "pulled")
    pulled = pull(ref, fresh, AMD64, settings, credentials=creds)
    assert pulled.index == pulled.target and pulled.target.digest == images.multi.digest
    assert pulled.target.media_type == MediaType.OCI_INDEX
    assert pulled.manifest.digest == images.base.manifest.digest
    assert pulled.manifest.platform == AMD64
    assert fresh.exists(images.multi.digest)
    assert not fresh.exists(images.arm.manifest.digest)
    assert not fresh.exists(images.arm.config.digest)
    assert_same_blobs(images.store, fresh, pulled.manifest)

    arm = pull(ref, fresh, ARM64, settings, credentials=creds)
    assert arm.manifest.digest == images.arm.manifest.digest

    with pytest.raises(PlatformNotFound) as err:
        pull(ref, fresh, Platform(architecture="s390x", os="linux"), settings,
             credentials=creds)
    assert "linux/s390x" in str(err.value) and "linux/amd64, linux/arm64" in str(err.value)


def test_cross_repository_mount(ours: AuthServer, images: Images, tmp_path: Path) -> None:
    settings = trusting_settings(tmp_path, ours.address, ours.ca)
    creds = StaticCredentials("alice", PASSWORDS["alice"])
    first, second = (f"team-a/mount-{uuid.uuid4().hex[:8]}" for _ in range(2))
    push(images.store, images.base.manifest, f"{ours.address}/{first}:1", settings,
         credentials=creds)
    uploads_before = len(requests_in_log(ours.proc.log(), "PUT", f"/v2/{second}/blobs/uploads/"))
    events: list[BlobProgress] = []
    push(images.store, images.base.manifest, f"{ours.address}/{second}:1", settings,
         credentials=creds, mount_from=[first], progress=events.append)
    assert {e.state for e in events} == {"mounted"}
    log = ours.proc.log()
    assert len(requests_in_log(log, "POST", f"/v2/{second}/blobs/uploads/")) == 2
    assert requests_in_log(log, "PATCH", f"/v2/{second}/blobs/uploads/") == []
    assert len(requests_in_log(log, "PUT", f"/v2/{second}/blobs/uploads/")) == uploads_before
    fresh = LocalStore(tmp_path / "pulled")
    pull(f"{ours.address}/{second}:1", fresh, AMD64, settings, credentials=creds)
    assert_same_blobs(images.store, fresh, images.base.manifest)


def test_anonymous_pull_where_the_rules_allow_it(ours: AuthServer, images: Images,
                                                 tmp_path: Path) -> None:
    settings = trusting_settings(tmp_path, ours.address, ours.ca)
    ref = f"{ours.address}/public/busybox:1"
    push(images.store, images.base.manifest, ref, settings,
         credentials=StaticCredentials("alice", PASSWORDS["alice"]))
    assert not settings.docker_config.exists()  # type: ignore[union-attr]
    pulled = pull(ref, LocalStore(tmp_path / "pulled"), AMD64, settings)
    assert pulled.manifest.digest == images.base.manifest.digest
    with pytest.raises(Unauthorized) as err:
        pull(f"{ours.address}/team-a/private:1", LocalStore(tmp_path / "other"), AMD64,
             settings)
    assert f"pybuild login {ours.address}" in str(err.value)
    with pytest.raises(Unauthorized):
        push(images.store, images.base.manifest, f"{ours.address}/public/anon:1", settings)


def test_wrong_password_is_a_clear_error(ours: AuthServer, images: Images,
                                         tmp_path: Path) -> None:
    settings = trusting_settings(tmp_path, ours.address, ours.ca)
    store(ours.address, "alice", "not-her-password", settings.docker_config)
    fresh = LocalStore(tmp_path / "pulled")
    with pytest.raises(Unauthorized) as err:
        pull(f"{ours.address}/team-a/anything:1", fresh, AMD64, settings)
    message = str(err.value)
    assert ours.address in message and "'alice'" in message
    assert f"pybuild login {ours.address}" in message
    assert "UNAUTHORIZED" in message
    assert list(fresh.walk()) == []


def test_identity_token_from_the_docker_config(ours: AuthServer, images: Images,
                                               tmp_path: Path) -> None:
    """An ``identitytoken`` (an OAuth2 refresh token, as ``docker login`` stores for some
    registries) is exchanged at the token endpoint with ``grant_type=refresh_token``."""
    settings = trusting_settings(tmp_path, ours.address, ours.ca)
    with ours.client() as c:
        r = c.post("/token", data={"grant_type": "password", "username": "alice",
                                   "password": PASSWORDS["alice"], "access_type": "offline",
                                   "service": "pybuild-registry", "client_id": "tests"})
    assert r.status_code == 200, r.text
    config = settings.docker_config
    assert config is not None
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"auths": {ours.address: {
        "identitytoken": r.json()["refresh_token"]}}}))
    ref = f"{ours.address}/team-a/identity:1"
    assert push(images.store, images.base.manifest, ref, settings) == \
        images.base.manifest.digest
    assert requests_in_log(ours.proc.log(), "POST", "/token")


def test_unknown_image_is_not_found(ours: AuthServer, tmp_path: Path) -> None:
    settings = trusting_settings(tmp_path, ours.address, ours.ca)
    creds = StaticCredentials("root", PASSWORDS["root"])
    ref = parse_reference(f"{ours.address}/team-a/missing-{uuid.uuid4().hex[:6]}:nope")
    with pytest.raises(NotFound) as err:
        pull(ref, LocalStore(tmp_path / "pulled"), AMD64, settings, credentials=creds)
    assert str(ref) in str(err.value) and ours.address in str(err.value)
    assert "NAME_UNKNOWN" in str(err.value) or "MANIFEST_UNKNOWN" in str(err.value)
    assert head_manifest(ref, settings, credentials=creds) is None


def test_token_renewed_when_the_registry_rejects_it(tmp_path: Path, images: Images) -> None:
    """A token the registry no longer accepts (its signing key changed while the client
    kept it) is replaced once and the request sent again."""
    server = start_auth_server(tmp_path / "srv")
    try:
        settings = trusting_settings(tmp_path, server.address, server.ca)
        creds = StaticCredentials("root", PASSWORDS["root"])
        with Transport(server.address, settings, credentials=creds) as transport:
            push(images.store, images.base.manifest, f"{server.address}/team-b/rot:1",
                 transport=transport)
            assert transport.stats["renewals"] == 0
            port, root = server.proc.port, server.root
            server.stop()
            (root / "auth" / KEY_FILE).unlink()
            server.proc.start()
            assert port == server.proc.port
            push(images.store, images.app.manifest, f"{server.address}/team-b/rot:2",
                 transport=transport)
            assert transport.stats["renewals"] >= 1
    finally:
        server.stop()


def test_token_expiring_in_the_middle_of_a_push(tmp_path: Path, images: Images) -> None:
    """With one-second tokens and a slow push (the progress callback sleeps), tokens run
    out between and during blob uploads; the push still finishes."""
    server = start_auth_server(tmp_path / "srv", config="token_ttl = 1\n" + CONFIG)
    try:
        settings = trusting_settings(tmp_path, server.address, server.ca, max_concurrency=1,
                                     monolithic_max=64 * 1024, chunk_size=64 * 1024)
        creds = StaticCredentials("root", PASSWORDS["root"])

        def slow(event: BlobProgress) -> None:
            if event.state == "uploading":
                time.sleep(0.3)

        with Transport(server.address, settings, credentials=creds) as transport:
            started = time.monotonic()
            digest = push(images.store, images.app.manifest, f"{server.address}/team-b/slow:1",
                          transport=transport, progress=slow)
            assert time.monotonic() - started > 3
            assert transport.stats["token_requests"] >= 3
        assert digest == images.app.manifest.digest
        fresh = LocalStore(tmp_path / "pulled")
        pull(f"{server.address}/team-b/slow:1", fresh, AMD64, settings, credentials=creds)
        assert_same_blobs(images.store, fresh, images.app.manifest)
    finally:
        server.stop()
