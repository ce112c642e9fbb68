"""Robot accounts and CLI secrets with the real clients against ``registry serve --tls``
(token auth, no config file): docker, podman, skopeo and ``pybuild login`` log in as
``robot$project+name``; a robot pushes to its project and is refused elsewhere with
DENIED; a pull-only robot cannot push; disabled and expired robots are refused at the next
token request; rotating a secret invalidates the old one; a user's CLI secret logs docker
in until it is revoked. On SQLite and on PostgreSQL."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.cli import main as pybuild_main
from layerstore.content.local import LocalStore
from layerstore.digest import Digest
from layerstore.oci import Descriptor, MediaType
from registry.client import Credentials, lookup, push
from registry.client.errors import Denied
from registry.config import Settings
from registry.robots.service import open_robot_store
from registry.testing.deadline import time_limit
from registry.testing.processes import ours
from tests.peers import Dockerd, require
from tests.registry.client.test_login import trust
from tests.registry.images import GREETING, busybox_image, layout_of
from tests.registry.test_auth_peers import PODMAN_CONF, run
from tests.registry.test_auth_policy_peers import DockerClient
from tests.registry.test_auth_server import AuthServer

TIMEOUT = 600
CI_PASSWORD = "ci-password-for-robots"


@pytest.fixture(autouse=True)
def deadline() -> Iterator[None]:
    """Fail a case that runs longer than TIMEOUT seconds instead of hanging the session."""
    with time_limit(TIMEOUT):
        yield


# The environment of each server's root (REGISTRY_METADATA_URL on PostgreSQL).
ENVIRONMENTS: dict[Path, dict[str, str]] = {}


def registry(root: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``registry ARGS --root ROOT`` as a program, with the environment of ``root``."""
    return subprocess.run([sys.executable, "-m", "registry.cli", *args, "--root", str(root)],
                          input=stdin, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **ENVIRONMENTS.get(root, {})})


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[AuthServer]:
    """``registry serve --tls`` on a fresh root, no config file, user ``ci``; its metadata,
    robots and projects in SQLite or PostgreSQL."""
    root = tmp_path_factory.mktemp(f"robots-peers-{request.param}") / "root"
    env: dict[str, str] = {}
    if request.param == "postgres":
        env["REGISTRY_METADATA_URL"] = request.getfixturevalue("postgres").create_database(
            "robots_peers")
    ENVIRONMENTS[root] = env
    added = registry(root, "user", "add", "ci", "--password-stdin", stdin=f"{CI_PASSWORD}\n")
    assert added.returncode == 0, added.stderr
    proc = ours(root, tls=True, env=env).start()
    yield AuthServer(proc, root)
    proc.stop()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path
          ) -> tuple[LocalStore, Path, Digest]:
    """An OCI layout holding busybox as ``base``: the store, the layout and its digest."""
    tmp = tmp_path_factory.mktemp("robots-images")
    store = LocalStore(tmp / "store")
    # Layers of its own: docker shares no layer of it with other tests' images, which they
    # may remove while this module pulls.
    rootfs = tmp / "rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    (rootfs / "robots-test").write_text(uuid.uuid4().hex)
    base = busybox_image(store, rootfs, architecture="amd64")
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


def robot(server: AuthServer, project: str, actions: str, *extra: str) -> tuple[str, str]:
    """A new robot of ``project`` (``registry robot create --json``): name and secret."""
    made = registry(server.root, "robot", "create", f"r{uuid.uuid4().hex[:8]}", "--project",
                    project, "--actions", actions, "--json", *extra)
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    assert doc["name"].startswith(f"robot${project}+")
    return doc["name"], doc["secret"]


def project(server: AuthServer) -> str:
    """A new project (``registry project create``) no other run uses."""
    name = f"robots-{uuid.uuid4().hex[:8]}"
    made = registry(server.root, "project", "create", name)
    assert made.returncode == 0, made.stderr
    return name


def test_docker_robot_pushes_to_its_project_and_is_refused_elsewhere(
        server: AuthServer, image, dockerd: Dockerd, tmp_path: Path) -> None:
    store, _, digest = image
    team, other = project(server), project(server)
    name, secret = robot(server, team, "pull,push")
    mine, theirs = f"{server.address}/{team}/app:1", f"{server.address}/{other}/app:1"
    client = DockerClient(server, tmp_path / "docker-config")
    try:
        client.load(store, digest, tmp_path / "image.tar", mine)
        login = client("login", server.address, "-u", name, "--password-stdin",
                       password=secret)
        assert b"Login Succeeded" in login.stdout
        assert "Pushed" in client("push", mine).stdout.decode()
        client("tag", mine, theirs)
        refused = client("push", theirs, check=False)
        assert refused.returncode != 0
        text = refused.stderr.decode()
        assert "denied" in text.lower() and f"robot account {name}" in text, text
        client("rmi", mine, theirs)
        client("pull", mine)
        assert client("run", "--rm", mine).stdout.decode().strip() == GREETING
        # Disabled: the stored login (a refresh token) is refused at the next token request.
        assert registry(server.root, "robot", "disable", name).returncode == 0
        client("rmi", mine)
        after = client("pull", mine, check=False)
        assert after.returncode != 0
        assert re.search(r"unauthorized|disabled", after.stderr.decode(), re.I), after.stderr
        relogin = client("login", server.address, "-u", name, "--password-stdin",
                         password=secret, check=False)
        assert relogin.returncode != 0 and "disabled" in relogin.stderr.decode(), relogin
    finally:
        client("rmi", "-f", mine, theirs, check=False)
        client.close()


def test_docker_login_with_a_users_cli_secret_until_revoked(
        server: AuthServer, image, dockerd: Dockerd, tmp_path: Path) -> None:
    store, _, digest = image
    made = registry(server.root, "user", "secret", "create", "ci", "--name", "docker-test",
                    "--json")
    assert made.returncode == 0, made.stderr
    secret = json.loads(made.stdout)["secret"]
    ref = f"{server.address}/secrets-{uuid.uuid4().hex[:8]}/app:1"  # in no project
    client = DockerClient(server, tmp_path / "docker-config")
    try:
        client.load(store, digest, tmp_path / "image.tar", ref)
        client("login", server.address, "-u", "ci", "--password-stdin", password=secret)
        assert "Pushed" in client("push", ref).stdout.decode()
        revoked = registry(server.root, "user", "secret", "revoke", "ci", "--name",
                           "docker-test")
        assert revoked.returncode == 0, revoked.stderr
        client("rmi", ref)
        assert client("pull", ref, check=False).returncode != 0
        again = client("login", server.address, "-u", "ci", "--password-stdin",
                       password=secret, check=False)
        assert again.returncode != 0
        assert "incorrect username or password" in again.stderr.decode(), again.stderr
    finally:
        client("rmi", "-f", ref, check=False)
        client.close()


def test_podman_pull_only_robot_cannot_push(server: AuthServer, image,
                                            isolated: dict[str, str]) -> None:
    _, layout, _ = image
    podman, skopeo, cert_dir = require("podman"), require("skopeo"), str(server.cert_dir)
    team = project(server)
    pusher, pusher_secret = robot(server, team, "pull,push")
    puller, puller_secret = robot(server, team, "pull")
    src = f"{server.address}/{team}/base:1"
    run(skopeo, "copy", "--dest-creds", f"{pusher}:{pusher_secret}", "--dest-cert-dir",
        cert_dir, f"oci:{layout}:base", f"docker://{src}", env=isolated)
    dst = f"{server.address}/{team}/copy:1"
    run(podman, "login", "--cert-dir", cert_dir, "-u", puller, "--password-stdin",
        server.address, stdin=f"{puller_secret}\n", env=isolated)
    try:
        run(podman, "pull", "--cert-dir", cert_dir, src, env=isolated)
        run(podman, "tag", src, dst, env=isolated)
        refused = run(podman, "push", "--cert-dir", cert_dir, dst, env=isolated, check=False)
        assert refused.returncode != 0
        assert re.search(r"denied|unauthorized", refused.stderr, re.I), refused.stderr
    finally:
        run(podman, "rmi", "-f", src, dst, env=isolated, check=False)
        run(podman, "logout", server.address, env=isolated, check=False)


def test_skopeo_disabled_expired_and_rotated_robots(server: AuthServer, image,
                                                    isolated: dict[str, str],
                                                    tmp_path: Path) -> None:
    _, layout, _ = image
    skopeo, cert_dir = require("skopeo"), str(server.cert_dir)
    team = project(server)
    name, secret = robot(server, team, "pull,push", "--expires", "7")
    ref = f"docker://{server.address}/{team}/app:1"

    def copy(creds: str) -> subprocess.CompletedProcess[str]:
        return run(skopeo, "copy", "--dest-creds", creds, "--dest-cert-dir", cert_dir,
                   f"oci:{layout}:base", ref, env=isolated, check=False)

    assert copy(f"{name}:{secret}").returncode == 0
    elsewhere = f"docker://{server.address}/{project(server)}/x:1"
    other = run(skopeo, "copy", "--dest-creds", f"{name}:{secret}", "--dest-cert-dir",
                cert_dir, f"oci:{layout}:base", elsewhere, env=isolated, check=False)
    assert other.returncode != 0
    assert re.search(r"denied|403 \(Forbidden\)", other.stderr, re.I), other.stderr

    assert registry(server.root, "robot", "disable", name).returncode == 0
    disabled = copy(f"{name}:{secret}")
    assert disabled.returncode != 0 and "disabled" in disabled.stderr, disabled.stderr
    assert registry(server.root, "robot", "enable", name).returncode == 0

    url = ENVIRONMENTS[server.root].get("REGISTRY_METADATA_URL", "")
    store = open_robot_store(Settings(root=server.root, metadata_url=url))
    try:
        store.update(team, name.split("+", 1)[1], expires_at=time.time() - 1)
    finally:
        store.close()
    expired = copy(f"{name}:{secret}")
    assert expired.returncode != 0 and "expired" in expired.stderr, expired.stderr

    fresh, fresh_secret = robot(server, team, "pull")
    rotated = registry(server.root, "robot", "rotate", fresh, "--json")
    assert rotated.returncode == 0, rotated.stderr
    new_secret = json.loads(rotated.stdout)["secret"]
    old = run(skopeo, "inspect", "--raw", "--creds", f"{fresh}:{fresh_secret}", "--cert-dir",
              cert_dir, ref, env=isolated, check=False)
    assert old.returncode != 0 and re.search(r"unauthorized|incorrect", old.stderr, re.I)
    run(skopeo, "inspect", "--raw", "--creds", f"{fresh}:{new_secret}", "--cert-dir",
        cert_dir, ref, env=isolated)


def test_pybuild_login_as_a_robot(server: AuthServer, image, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    store, _, digest = image
    config = tmp_path / "docker" / "config.json"
    monkeypatch.setenv("DOCKER_CONFIG", str(config.parent))
    daemon = tmp_path / "daemon.json"
    daemon.write_text("{}")
    monkeypatch.setenv("PYBUILD_DAEMON_CONFIG", str(daemon))
    team = project(server)
    name, secret = robot(server, team, "pull,push")
    manifest = store.info(digest)
    assert manifest is not None
    with trust(server.address, server.ca):
        monkeypatch.setattr("sys.stdin", io.StringIO(secret + "\n"))
        status = pybuild_main(["--root", str(tmp_path / "pb"), "login", "-u", name,
                               "--password-stdin", server.address])
        out, err = capsys.readouterr()
        assert status == 0 and out.strip() == "Login Succeeded", err
        assert lookup(server.address, config) == Credentials(name, secret)
        descriptor = Descriptor(media_type=MediaType.OCI_MANIFEST, digest=digest,
                                size=manifest.size)
        assert push(store, descriptor, f"{server.address}/{team}/pb:1") == digest
        with pytest.raises(Denied) as refused:
            push(store, descriptor, f"{server.address}/{project(server)}/pb:1")
        assert "HTTP 403" in str(refused.value), refused.value
        assert registry(server.root, "robot", "disable", name).returncode == 0
        monkeypatch.setattr("sys.stdin", io.StringIO(secret + "\n"))
        status = pybuild_main(["--root", str(tmp_path / "pb"), "login", "-u", name,
                               "--password-stdin", server.address])
        err = capsys.readouterr().err
        assert status == 1 and f"robot account {name} is disabled" in err, err
