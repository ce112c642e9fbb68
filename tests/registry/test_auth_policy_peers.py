"""The default access policy with the real clients: on a fresh ``registry serve --tls``
without a config file, a user added by ``registry user add`` logs in and pushes and pulls
with docker, podman and skopeo, anonymous clients are refused, and a rule file still
restricts, with the reason in docker's error."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerstore.assembly import load_image
from layerstore.content.local import LocalStore
from layerstore.digest import Digest
from layerstore.docker_archive import ArchiveImage, write_docker_archive
from layerstore.oci import Descriptor, MediaType
from registry.testing.processes import ours
from tests.peers import Dockerd, docker, require
from tests.registry.images import GREETING, busybox_image, layout_of
from tests.registry.test_auth_peers import PODMAN_CONF, run
from tests.registry.test_auth_policy import CI_PASSWORD, registry_cli
from tests.registry.test_auth_server import PASSWORDS, AuthServer, start_auth_server

CI = f"ci:{CI_PASSWORD}"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """``registry serve --tls`` on a fresh root, no config file, user ``ci``."""
    root = tmp_path_factory.mktemp("policy-peers") / "root"
    added = registry_cli("user", "add", "ci", "--password-stdin", "--root", str(root),
                         stdin=f"{CI_PASSWORD}\n")
    assert added.returncode == 0, added.stderr
    proc = ours(root, tls=True).start()
    yield AuthServer(proc, root)
    proc.stop()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path
          ) -> tuple[LocalStore, Path, Digest]:
    """An OCI layout holding busybox as ``base``: the store, the layout and its digest."""
    tmp = tmp_path_factory.mktemp("policy-images")
    store = LocalStore(tmp / "store")
    base = busybox_image(store, busybox_rootfs)
    return store, layout_of(tmp / "layout", store, {"base": base.manifest}), \
        base.manifest.digest


@pytest.fixture
def isolated(tmp_path: Path) -> dict[str, str]:
    """Environment that keeps podman's and skopeo's credentials in ``tmp_path``."""
    conf = tmp_path / "containers.conf"
    conf.write_text(PODMAN_CONF)
    auth = tmp_path / "auth.json"
    auth.write_text('{"auths": {}}\n')
    return {"CONTAINERS_CONF": str(conf), "REGISTRY_AUTH_FILE": str(auth)}


def unique(prefix: str) -> str:
    """A repository name no other run uses."""
    return f"policy-{prefix}-{uuid.uuid4().hex[:8]}/app"


class DockerClient:
    """Debian's docker client with its own config directory, trusting one registry."""

    def __init__(self, server: AuthServer, config: Path) -> None:
        self.server = server
        self.config = config
        config.mkdir(parents=True, exist_ok=True)
        self.certs = Path("/etc/docker/certs.d") / server.address
        self.certs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(server.ca, self.certs / "ca.crt")

    def __call__(self, *args: str, check: bool = True, password: str | None = None
                 ) -> subprocess.CompletedProcess[bytes]:
        stdin = None if password is None else f"{password}\n".encode()
        return docker("--config", str(self.config), *args, check=check, input=stdin)

    def load(self, store: LocalStore, digest: Digest, archive: Path, *refs: str) -> None:
        """``docker load`` the image ``digest`` under ``refs``."""
        descriptor = Descriptor(media_type=MediaType.OCI_MANIFEST, digest=digest,
                                size=store.info(digest).size)
        write_docker_archive(archive, store, [ArchiveImage(load_image(store, descriptor),
                                                           refs)])
        docker("load", "-i", str(archive))

    def close(self) -> None:
        """Stop trusting the registry."""
        shutil.rmtree(self.certs, ignore_errors=True)


def test_docker_login_push_pull_with_the_default_policy(
        fresh: AuthServer, image, dockerd: Dockerd, tmp_path: Path) -> None:
    store, _, digest = image
    ref = f"{fresh.address}/{unique('docker')}:1"
    client = DockerClient(fresh, tmp_path / "docker-config")
    try:
        client.load(store, digest, tmp_path / "image.tar", ref)
        anonymous = client("push", ref, check=False)
        assert anonymous.returncode != 0
        assert re.search(r"denied|unauthorized", anonymous.stderr.decode(), re.I)
        login = client("login", fresh.address, "-u", "ci", "--password-stdin",
                       password=CI_PASSWORD)
        assert b"Login Succeeded" in login.stdout
        assert "Pushed" in client("push", ref).stdout.decode()
        client("rmi", ref)
        client("pull", ref)
        assert client("run", "--rm", ref).stdout.decode().strip() == GREETING
        client("logout", fresh.address)
        client("rmi", ref)
        refused = client("pull", ref, check=False)
        assert refused.returncode != 0
        assert "anonymous clients" in refused.stderr.decode(), refused.stderr
    finally:
        docker("rmi", "-f", ref, check=False)
        client.close()


def test_skopeo_with_the_default_policy(fresh: AuthServer, image, isolated: dict[str, str],
                                        tmp_path: Path) -> None:
    _, layout, digest = image
    skopeo, cert_dir = require("skopeo"), str(fresh.cert_dir)
    ref = f"docker://{fresh.address}/{unique('skopeo')}:1"
    anonymous = run(skopeo, "copy", "--dest-cert-dir", cert_dir, f"oci:{layout}:base", ref,
                    env=isolated, check=False)
    assert anonymous.returncode != 0
    run(skopeo, "copy", "--dest-creds", CI, "--dest-cert-dir", cert_dir,
        f"oci:{layout}:base", ref, env=isolated)
    raw = run(skopeo, "inspect", "--raw", "--creds", CI, "--cert-dir", cert_dir, ref,
              env=isolated).stdout
    assert Digest.from_bytes(raw.encode()) == digest
    out = tmp_path / "out"
    run(skopeo, "copy", "--src-creds", CI, "--src-cert-dir", cert_dir, ref,
        f"oci:{out}:copy", env=isolated)
    assert json.loads((out / "index.json").read_text())["manifests"][0]["digest"] == str(digest)
    refused = run(skopeo, "inspect", "--raw", "--cert-dir", cert_dir, ref, env=isolated,
                  check=False)
    assert refused.returncode != 0
    wrong = run(skopeo, "inspect", "--raw", "--creds", "ci:wrong", "--cert-dir", cert_dir, ref,
                env=isolated, check=False)
    assert wrong.returncode != 0


def test_podman_with_the_default_policy(fresh: AuthServer, image, isolated: dict[str, str]
                                        ) -> None:
    _, layout, _ = image
    podman, skopeo, cert_dir = require("podman"), require("skopeo"), str(fresh.cert_dir)
    src = f"{fresh.address}/{unique('podman-src')}:1"
    dst = f"{fresh.address}/{unique('podman-dst')}:1"
    run(skopeo, "copy", "--dest-creds", CI, "--dest-cert-dir", cert_dir,
        f"oci:{layout}:base", f"docker://{src}", env=isolated)
    refused = run(podman, "pull", "--cert-dir", cert_dir, src, env=isolated, check=False)
    assert refused.returncode != 0
    run(podman, "login", "--cert-dir", cert_dir, "-u", "ci", "--password-stdin",
        fresh.address, stdin=f"{CI_PASSWORD}\n", env=isolated)
    try:
        run(podman, "pull", "--cert-dir", cert_dir, src, env=isolated)
        run(podman, "tag", src, dst, env=isolated)
        run(podman, "push", "--cert-dir", cert_dir, dst, env=isolated)
        run(podman, "rmi", "-f", src, dst, env=isolated)
        run(podman, "pull", "--cert-dir", cert_dir, dst, env=isolated)
        run(podman, "logout", fresh.address, env=isolated)
        refused = run(podman, "pull", "--cert-dir", cert_dir, dst, env=isolated, check=False)
        assert refused.returncode != 0
    finally:
        run(podman, "rmi", "-f", src, dst, env=isolated, check=False)


def test_a_rule_file_still_restricts_docker_and_says_why(
        tmp_path: Path, image, dockerd: Dockerd) -> None:
    store, _, digest = image
    srv = start_auth_server(tmp_path / "ruled")
    repo = f"team-b/{unique('ruled').replace('/', '-')}"
    ref = f"{srv.address}/{repo}:1"
    client = DockerClient(srv, tmp_path / "docker-config")
    try:
        client.load(store, digest, tmp_path / "image.tar", ref)
        client("login", srv.address, "-u", "alice", "--password-stdin",
               password=PASSWORDS["alice"])
        refused = client("push", ref, check=False)
        assert refused.returncode != 0
        assert f"no rule grants pull on {repo} to user alice" in refused.stderr.decode(), \
            refused.stderr
        client("login", srv.address, "-u", "carol", "--password-stdin",
               password=PASSWORDS["carol"])
        assert "Pushed" in client("push", ref).stdout.decode()
        client("logout", srv.address)
    finally:
        docker("rmi", "-f", ref, check=False)
        client.close()
        srv.stop()
