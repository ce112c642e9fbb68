"""Our registry with the real clients over plain HTTP on loopback: docker, skopeo, podman,
buildah."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerstore.assembly import load_image
from layerstore.content.local import LocalStore
from layerstore.digest import Digest
from layerstore.docker_archive import ArchiveImage, write_docker_archive
from layerstore.oci import Descriptor, MediaType
from registry.testing.processes import RegistryProcess, ours
from tests.peers import Dockerd, docker, require
from tests.registry.images import GREETING, busybox_image, layout_of, multiarch_index
from tests.registry.rgw import storage_env


def run(*argv: str, env: dict[str, str] | None = None, check: bool = True
        ) -> subprocess.CompletedProcess[str]:
    """Run a peer and fail with its output when it fails."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Iterator[RegistryProcess]:
    """Our registry; its blobs on S3 with ``PYBUILD_TEST_STORAGE=s3``."""
    proc = ours(tmp_path_factory.mktemp("peers") / "root", env=storage_env(request)).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path
           ) -> tuple[LocalStore, Path, dict[str, Digest]]:
    """A layout with ``base`` (busybox), ``app`` (busybox + a layer) and ``multi`` (an index)."""
    tmp = tmp_path_factory.mktemp("images")
    store = LocalStore(tmp / "store")
    base = busybox_image(store, busybox_rootfs)
    app = busybox_image(store, busybox_rootfs, extra={"app/data": b"app\n"}, workdir=tmp / "w")
    arm = busybox_image(store, busybox_rootfs, architecture="arm64")
    index = multiarch_index(store, {"amd64": base, "arm64": arm})
    layout = layout_of(tmp / "layout", store, {"base": base.manifest, "app": app.manifest,
                                               "multi": index})
    return store, layout, {"base": base.manifest.digest, "app": app.manifest.digest,
                           "multi": index.digest}


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return run(require("skopeo"), *args)


def test_skopeo_copies_in_and_out(server: RegistryProcess, images, tmp_path: Path) -> None:
    _, layout, digests = images
    ref = f"docker://{server.address}/peers/skopeo"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:base", f"{ref}:1")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:app", f"{ref}:2")
    raw = skopeo("inspect", "--tls-verify=false", "--raw", f"{ref}:1").stdout.encode()
    assert Digest.from_bytes(raw) == digests["base"]
    out = tmp_path / "out"
    skopeo("copy", "--src-tls-verify=false", f"{ref}:2", f"oci:{out}:copy")
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == str(digests["app"])
    tags = json.loads(skopeo("list-tags", "--tls-verify=false", ref).stdout)
    assert tags["Tags"] == ["1", "2"]
    skopeo("delete", "--tls-verify=false", f"{ref}@{digests['app']}")
    gone = run(require("skopeo"), "inspect", "--tls-verify=false", "--raw", f"{ref}:2",
               check=False)
    assert gone.returncode != 0 and "manifest unknown" in gone.stderr.lower()
    tags = json.loads(skopeo("list-tags", "--tls-verify=false", ref).stdout)
    assert tags["Tags"] == ["1"]


def test_skopeo_copy_all_of_a_multiarch_index(server: RegistryProcess, images,
                                              tmp_path: Path) -> None:
    _, layout, digests = images
    ref = f"docker://{server.address}/peers/multi:1"
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:multi", ref)
    raw = skopeo("inspect", "--tls-verify=false", "--raw", ref).stdout.encode()
    assert Digest.from_bytes(raw) == digests["multi"]
    assert len(json.loads(raw)["manifests"]) == 2
    out = tmp_path / "multi"
    skopeo("copy", "--all", "--src-tls-verify=false", ref, f"oci:{out}:m")
    assert json.loads((out / "index.json").read_text())["manifests"][0]["digest"] == str(
        digests["multi"])


def test_docker_push_pull_share_layers_and_pull_by_digest(
        server: RegistryProcess, images, dockerd: Dockerd, tmp_path: Path) -> None:
    store, _, digests = images
    stored = [
        ArchiveImage(load_image(store, manifest_descriptor(store, digests[name])),
                     (f"{server.address}/peers/docker-{name}:1",))
        for name in ("base", "app")
    ]
    archive = tmp_path / "images.tar"
    write_docker_archive(archive, store, stored)
    docker("load", "-i", str(archive))
    first = docker("push", f"{server.address}/peers/docker-base:1").stdout.decode()
    assert "Pushed" in first
    second = docker("push", f"{server.address}/peers/docker-app:1").stdout.decode()
    assert "Mounted from peers/docker-base" in second or "Layer already exists" in second
    pushed_digest = next(line.split("digest: ")[1].split()[0]
                         for line in second.splitlines() if "digest: " in line)
    for name in ("base", "app"):
        docker("rmi", f"{server.address}/peers/docker-{name}:1")
    docker("pull", f"{server.address}/peers/docker-app:1")
    assert docker("run", "--rm", f"{server.address}/peers/docker-app:1").stdout.decode() \
        .strip() == GREETING
    docker("pull", f"{server.address}/peers/docker-app@{pushed_digest}")
    docker("rmi", "-f", f"{server.address}/peers/docker-app:1",
           f"{server.address}/peers/docker-app@{pushed_digest}", check=False)


def manifest_descriptor(store: LocalStore, digest: Digest) -> Descriptor:
    """The descriptor of an OCI manifest held in ``store``."""
    return Descriptor(media_type=MediaType.OCI_MANIFEST, digest=digest,
                      size=store.info(digest).size)


PODMAN_CONF = "[containers]\ndefault_ulimits = []\n"


def test_podman_and_buildah_push_and_pull(server: RegistryProcess, images,
                                          tmp_path: Path) -> None:
    _, layout, _ = images
    podman, buildah = require("podman"), require("buildah")
    conf = tmp_path / "containers.conf"
    conf.write_text(PODMAN_CONF)
    env = {"CONTAINERS_CONF": str(conf)}
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:base",
           f"docker://{server.address}/peers/podman-src:1")
    src = f"{server.address}/peers/podman-src:1"
    run(podman, "pull", "--tls-verify=false", src, env=env)
    out = run(podman, "--runtime", "runc", "run", "--rm", src, env=env).stdout
    assert out.strip() == GREETING
    run(podman, "tag", src, f"{server.address}/peers/podman-dst:1", env=env)
    run(podman, "push", "--tls-verify=false", f"{server.address}/peers/podman-dst:1", env=env)
    run(podman, "rmi", "-f", src, f"{server.address}/peers/podman-dst:1", env=env)
    run(podman, "pull", "--tls-verify=false", f"{server.address}/peers/podman-dst:1", env=env)

    container = run(buildah, "from", "--tls-verify=false", src, env=env).stdout.strip()
    try:
        run(buildah, "config", "--label", "made-by=buildah", container, env=env)
        run(buildah, "commit", container, "peers/buildah:1", env=env)
        run(buildah, "push", "--tls-verify=false", "peers/buildah:1",
            f"docker://{server.address}/peers/buildah:1", env=env)
    finally:
        run(buildah, "rm", container, env=env, check=False)
    raw = skopeo("inspect", "--tls-verify=false",
                 f"docker://{server.address}/peers/buildah:1").stdout
    assert json.loads(raw)["Labels"]["made-by"] == "buildah"
    run(podman, "rmi", "-f", f"{server.address}/peers/podman-dst:1", "peers/buildah:1",
        env=env, check=False)
