"""Tag policies with the real clients on ``registry serve --tls`` with token auth: docker
and podman cannot move an immutable tag (their error shows the reason), skopeo cannot delete
it, pushing the same image again works; a retention run through ``registry gc`` removes
exactly what ``registry retention run --dry-run`` listed, and skopeo and docker see it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerstore.assembly import StoredImage
from layerstore.content.local import LocalStore
from registry.testing.deadline import time_limit
from registry.testing.processes import ours
from tests.peers import Dockerd, docker, require
from tests.registry.images import busybox_image, layout_of
from tests.registry.test_auth_peers import run
from tests.registry.test_auth_policy import CI_PASSWORD
from tests.registry.test_auth_policy_peers import CI, DockerClient, isolated  # noqa: F401
from tests.registry.test_auth_server import AuthServer
from tests.registry.test_tagpolicy_server import removal_lines

TIMEOUT = 900


@pytest.fixture(autouse=True)
def deadline() -> Iterator[None]:
    """Fail a case that hangs instead of the session."""
    with time_limit(TIMEOUT):
        yield


def cli(root: Path, *args: str) -> str:
    """``registry ARGS --root ROOT``, which must succeed; its output."""
    done = subprocess.run([sys.executable, "-m", "registry.cli", *args, "--root", str(root)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """``registry serve --tls`` (token auth) with user ``ci``, an admin (may delete)."""
    root = tmp_path_factory.mktemp("tagpolicy-peers") / "root"
    added = subprocess.run([sys.executable, "-m", "registry.cli", "user", "add", "ci",
                            "--password-stdin", "--root", str(root)],
                           input=f"{CI_PASSWORD}\n", capture_output=True, text=True,
                           timeout=120)
    assert added.returncode == 0, added.stderr
    proc = ours(root, tls=True, env={"REGISTRY_ADMINS": "ci"}).start()
    yield AuthServer(proc, root)
    proc.stop()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path
           ) -> tuple[LocalStore, Path, list[StoredImage]]:
    """Three different busybox images in one store and an OCI layout (``img0``..``img2``)."""
    tmp = tmp_path_factory.mktemp("tagpolicy-images")
    store = LocalStore(tmp / "store")
    made = [busybox_image(store, busybox_rootfs, extra={"which": f"image {i}\n".encode()},
                          workdir=tmp / "work") for i in range(3)]
    layout = layout_of(tmp / "layout", store,
                       {f"img{i}": image.manifest for i, image in enumerate(made)})
    return store, layout, made


def project() -> str:
    """A project name no other run uses (made by ``registry project create`` before its
    rules)."""
    return f"tagpolicy-{uuid.uuid4().hex[:8]}"


def test_an_immutable_tag_cannot_be_moved_or_deleted(
        server: AuthServer, images, dockerd: Dockerd, isolated: dict[str, str],  # noqa: F811
        tmp_path: Path) -> None:
    store, layout, made = images
    name = project()
    ref = f"{server.address}/{name}/app:v1"
    client = DockerClient(server, tmp_path / "docker-config")
    podman, skopeo, cert_dir = require("podman"), require("skopeo"), str(server.cert_dir)
    local = f"localhost/{name}:img2"
    try:
        client("login", server.address, "-u", "ci", "--password-stdin", password=CI_PASSWORD)
        client.load(store, made[0].manifest.digest, tmp_path / "a.tar", ref)
        client("push", ref)

        def pushed_digest() -> str:
            return run(skopeo, "inspect", "--format", "{{.Digest}}", "--creds", CI,
                       "--cert-dir", cert_dir, f"docker://{ref}", env=isolated).stdout.strip()

        first = pushed_digest()
        cli(server.root, "project", "create", name)
        cli(server.root, "immutable", "add", name, "--repos", "**", "--tags", "v*")
        again = client("push", ref)  # the same image: allowed
        assert again.returncode == 0
        client.load(store, made[1].manifest.digest, tmp_path / "b.tar", ref)
        moved = client("push", ref, check=False)
        assert moved.returncode != 0
        error = moved.stderr.decode()
        assert f"tag 'v1' of '{name}/app' is immutable" in error, error
        assert "immutability rule" in error
        deleted = run(skopeo, "delete", "--creds", CI, "--cert-dir", cert_dir,
                      f"docker://{ref}", env=isolated, check=False)
        assert deleted.returncode != 0 and "is immutable" in deleted.stderr, deleted.stderr
        run(skopeo, "copy", f"oci:{layout}:img2", f"containers-storage:{local}",
            env=isolated)
        by_podman = run(podman, "push", "--creds", CI, "--cert-dir", cert_dir, local,
                        f"docker://{ref}", env=isolated, check=False)
        assert by_podman.returncode != 0 and "is immutable" in by_podman.stderr, \
            by_podman.stderr
        assert pushed_digest() == first  # the tag never moved
        # Another tag the rule does not match can still be moved and deleted.
        dev = f"{server.address}/{name}/app:dev"
        for source in ("img0", "img1"):
            run(skopeo, "copy", "--dest-creds", CI, "--dest-cert-dir", cert_dir,
                f"oci:{layout}:{source}", f"docker://{dev}", env=isolated)
        run(skopeo, "delete", "--creds", CI, "--cert-dir", cert_dir, f"docker://{dev}",
            env=isolated)
    finally:
        docker("rmi", "-f", ref, check=False)
        run(podman, "rmi", "-f", local, env=isolated, check=False)
        client.close()


def test_retention_with_gc_removes_what_the_dry_run_listed(
        server: AuthServer, images, dockerd: Dockerd, isolated: dict[str, str],  # noqa: F811
        tmp_path: Path) -> None:
    _, layout, _ = images
    name = project()
    skopeo, cert_dir = require("skopeo"), str(server.cert_dir)

    def ref(tag: str) -> str:
        return f"docker://{server.address}/{name}/app:{tag}"

    for i in range(3):
        run(skopeo, "copy", "--dest-creds", CI, "--dest-cert-dir", cert_dir,
            f"oci:{layout}:img{i}", ref(f"build-{i}"), env=isolated)
    cli(server.root, "project", "create", name)
    cli(server.root, "retention", "add", name, "--keep-latest", "1", "--tags", "build-*")
    dry = cli(server.root, "retention", "run", "--dry-run", "--project", name)
    planned = removal_lines(dry, "would remove ")
    assert {line.split("\t")[1] for line in planned} == {"tags=build-0", "tags=build-1"}, dry
    done = cli(server.root, "gc", "--grace", "0")
    assert [line for line in removal_lines(done, "removed ") if name in line] == planned
    for tag in ("build-0", "build-1"):
        gone = run(skopeo, "inspect", "--raw", "--creds", CI, "--cert-dir", cert_dir,
                   ref(tag), env=isolated, check=False)
        assert gone.returncode != 0
    pulled = f"{server.address}/{name}/app:build-2"
    client = DockerClient(server, tmp_path / "docker-config")
    try:
        client("login", server.address, "-u", "ci", "--password-stdin", password=CI_PASSWORD)
        client("pull", pulled)
        out = client("run", "--rm", pulled, "cat", "/which").stdout.decode()
        assert out.strip() == "image 2"
    finally:
        docker("rmi", "-f", pulled, check=False)
        client.close()
