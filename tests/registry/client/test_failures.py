"""Things going wrong, and going right again: a pull-through mirror for Docker Hub images,
a corrupted blob on the registry, a registry that goes away in the middle of a push (and
one that comes back by itself), and plain-HTTP registries that must be listed as insecure."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerstore.content.local import LocalStore
from layerstore.oci import Manifest, Platform
from layerstore.walk import load_manifest
from registry.client import (
    BlobProgress,
    ClientSettings,
    DigestMismatch,
    RetryPolicy,
    Unreachable,
    parse_reference,
    pull,
    push,
)
from registry.testing.processes import RegistryProcess, free_port, ours
from tests.registry.client.conftest import FAST_RETRY, Images, requests_in_log
from tests.registry.client.test_ours import assert_same_blobs

AMD64 = Platform(architecture="amd64", os="linux")


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[RegistryProcess]:
    """Our registry over plain HTTP without authentication, with its own root."""
    proc = ours(tmp_path / "registry", workers=1).start()
    yield proc
    proc.stop()


def insecure(proc: RegistryProcess, **changes: object) -> ClientSettings:
    """Settings that list ``proc`` as an insecure registry."""
    values: dict[str, object] = {"insecure_registries": (proc.address,), "retry": FAST_RETRY,
                                 "timeout": 20.0,
                                 "docker_config": Path("/nonexistent/config.json")}
    values.update(changes)
    return ClientSettings(**values)  # type: ignore[arg-type]


def test_docker_hub_images_come_from_a_mirror(plain: RegistryProcess, images: Images,
                                              tmp_path: Path) -> None:
    push(images.store, images.base.manifest, f"{plain.address}/library/debian:bookworm",
         insecure(plain))
    down = f"http://127.0.0.1:{free_port()}"
    settings = ClientSettings(mirrors=(down, plain.url), retry=FAST_RETRY, timeout=10,
                              docker_config=tmp_path / "config.json")
    fresh = LocalStore(tmp_path / "pulled")
    pulled = pull(parse_reference("debian:bookworm"), fresh, AMD64, settings)
    assert pulled.source == plain.url
    assert str(pulled.reference) == "docker.io/library/debian:bookworm"
    assert pulled.manifest.digest == images.base.manifest.digest
    assert_same_blobs(images.store, fresh, pulled.manifest)
    assert requests_in_log(plain.log(), "GET", "/v2/library/debian/manifests/bookworm")

    with pytest.raises(Unreachable) as err:
        pull("debian:trixie", LocalStore(tmp_path / "other"), AMD64, settings)
    message = str(err.value)
    assert "registry-1.docker.io" in message and "mirrors tried first" in message
    assert plain.url in message and "trixie" in message


def test_corrupted_blob_is_a_digest_mismatch(plain: RegistryProcess, images: Images,
                                             tmp_path: Path) -> None:
    ref = f"{plain.address}/team/corrupt:1"
    settings = insecure(plain)
    push(images.store, images.app.manifest, ref, settings)
    manifest = load_manifest(images.store, images.app.manifest)
    assert isinstance(manifest, Manifest)
    victim = max(manifest.layers, key=lambda d: d.size)
    blob = plain_root(plain) / "content" / "blobs" / "sha256" / victim.digest.hex
    assert blob.stat().st_size == victim.size
    fd = os.open(blob, os.O_WRONLY)
    try:
        os.pwrite(fd, b"corrupted!", victim.size // 2)
    finally:
        os.close(fd)

    fresh = LocalStore(tmp_path / "pulled")
    with pytest.raises(DigestMismatch) as err:
        pull(ref, fresh, AMD64, settings)
    assert err.value.digest == str(victim.digest)
    assert str(victim.digest) in str(err.value) and "team/corrupt" in str(err.value)
    assert not fresh.exists(victim.digest)
    assert not fresh.exists(images.app.manifest.digest)
    assert fresh.list_statuses() == []


def plain_root(proc: RegistryProcess) -> Path:
    """The storage root of a registry started by :func:`ours`."""
    return Path(proc.argv[proc.argv.index("--root") + 1])


def test_registry_gone_in_the_middle_of_a_push(plain: RegistryProcess, images: Images) -> None:
    settings = insecure(plain, max_concurrency=1)
    ref = f"{plain.address}/team/away:1"
    states: list[str] = []

    def kill_after_first_blob(event: BlobProgress) -> None:
        if event.finished:
            states.append(event.state)
            if len(states) == 1:
                plain.kill()

    with pytest.raises(Unreachable) as err:
        push(images.store, images.app.manifest, ref, settings, progress=kill_after_first_blob)
    assert plain.address in str(err.value) and "connection refused" in str(err.value)
    assert states == ["pushed"]

    plain.start()
    events: list[BlobProgress] = []
    assert push(images.store, images.app.manifest, ref, settings,
                progress=events.append) == images.app.manifest.digest
    finished = [e.state for e in events if e.finished]
    assert sorted(finished) == ["exists", "pushed", "pushed"]


def test_chunked_upload_resumes_when_the_registry_comes_back(plain: RegistryProcess,
                                                             images: Images,
                                                             tmp_path: Path) -> None:
    chunk = 128 * 1024
    retry = RetryPolicy(attempts=10, base_delay=0.25, max_delay=2.0, total=60.0)
    settings = insecure(plain, max_concurrency=1, monolithic_max=chunk, chunk_size=chunk,
                        retry=retry)
    ref = f"{plain.address}/team/resume:1"
    restarted = threading.Event()
    restarter: list[threading.Thread] = []

    def restart() -> None:
        time.sleep(0.5)
        plain.start()
        restarted.set()

    def crash_mid_layer(event: BlobProgress) -> None:
        if not restarter and event.state == "uploading" and event.done > 3 * chunk:
            plain.kill()
            thread = threading.Thread(target=restart)
            restarter.append(thread)
            thread.start()

    try:
        events: list[BlobProgress] = []

        def both(event: BlobProgress) -> None:
            events.append(event)
            crash_mid_layer(event)

        digest = push(images.store, images.base.manifest, ref, settings, progress=both)
    finally:
        for thread in restarter:
            thread.join(60)
    assert restarted.is_set() and digest == images.base.manifest.digest
    log = plain.log()
    assert requests_in_log(log, "GET", "/v2/team/resume/blobs/uploads/[0-9a-f-]+")
    layer_size = max(e.total for e in events)
    chunks = -(-layer_size // chunk)
    patches = requests_in_log(log, "PATCH", "/v2/team/resume/blobs/uploads/")
    # the killed server may die before logging the PATCH it was serving
    assert chunks - 1 <= len(patches) <= chunks + 2
    fresh = LocalStore(tmp_path / "pulled")
    pulled = pull(ref, fresh, AMD64, settings)
    assert_same_blobs(images.store, fresh, pulled.manifest)


def test_plain_http_only_for_insecure_registries(plain: RegistryProcess, images: Images,
                                                 tmp_path: Path) -> None:
    ref = f"{plain.address}/team/plain:1"
    strict = ClientSettings(retry=FAST_RETRY, timeout=20, docker_config=tmp_path / "config.json",
                            loopback_insecure=False)
    with pytest.raises(Unreachable) as err:
        push(images.store, images.base.manifest, ref, strict)
    message = str(err.value)
    assert f"https://{plain.address}/v2/" in message
    assert "insecure-registries" in message
    push(images.store, images.base.manifest, ref, insecure(plain))
    for listed in (plain.address, "127.0.0.0/8", f"http://{plain.address}"):
        settings = ClientSettings(insecure_registries=(listed,), retry=FAST_RETRY, timeout=20,
                                  docker_config=tmp_path / "config.json",
                                  loopback_insecure=False)
        pulled = pull(ref, LocalStore(tmp_path / listed.replace("/", "_")), AMD64, settings)
        assert pulled.source == plain.url
    other = ClientSettings(insecure_registries=("127.0.0.1:1", "10.0.0.0/8"),
                           retry=FAST_RETRY, timeout=20, docker_config=tmp_path / "config.json",
                           loopback_insecure=False)
    with pytest.raises(Unreachable):
        pull(ref, LocalStore(tmp_path / "refused"), AMD64, other)
    default = ClientSettings(retry=FAST_RETRY, timeout=20,
                             docker_config=tmp_path / "config.json")
    pulled = pull(ref, LocalStore(tmp_path / "loopback"), AMD64, default)
    assert pulled.source == plain.url
