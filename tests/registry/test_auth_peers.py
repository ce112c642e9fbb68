"""The real clients against ``registry serve --tls`` with token auth and access rules,
trusting the generated CA: docker (login, push, pull, logout), skopeo, podman, buildah and
curl doing the token flow by hand."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerstore.assembly import load_image
from layerstore.content.local import LocalStore
from layerstore.digest import Digest
from layerstore.docker_archive import ArchiveImage, write_docker_archive
from layerstore.oci import Descriptor, MediaType
from tests.peers import Dockerd, docker, require
from tests.registry.images import GREETING, busybox_image, layout_of
from tests.registry.test_auth_server import PASSWORDS, SERVICE, AuthServer, start_auth_server

PODMAN_CONF = "[containers]\ndefault_ulimits = []\n"


def run(*argv: str, env: dict[str, str] | None = None, check: bool = True,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a peer; fail with its output when it fails and ``check`` is set."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, input=stdin,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def creds(user: str) -> str:
    """``user:password`` for ``--creds``."""
    return f"{user}:{PASSWORDS[user]}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """A TLS registry with token auth and the rules of the server tests."""
    srv = start_auth_server(tmp_path_factory.mktemp("auth-peers"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path
          ) -> tuple[LocalStore, Path, Digest]:
    """An OCI layout holding busybox as ``base``: the store, the layout and its digest."""
    tmp = tmp_path_factory.mktemp("auth-images")
    store = LocalStore(tmp / "store")
    base = busybox_image(store, busybox_rootfs)
    layout = layout_of(tmp / "layout", store, {"base": base.manifest})
    return store, layout, base.manifest.digest


@pytest.fixture
def isolated(tmp_path: Path) -> dict[str, str]:
    """Environment that keeps the peers' credentials and config in ``tmp_path``."""
    conf = tmp_path / "containers.conf"
    conf.write_text(PODMAN_CONF)
    auth = tmp_path / "auth.json"
    auth.write_text('{"auths": {}}\n')
    return {"CONTAINERS_CONF": str(conf), "REGISTRY_AUTH_FILE": str(auth)}


def seed(server: AuthServer, layout: Path, repo: str) -> str:
    """Copy busybox into ``repo:1`` as the admin; returns the reference."""
    ref = f"{server.address}/{repo}:1"
    run(require("skopeo"), "copy", "--dest-creds", creds("root"), "--dest-cert-dir",
        str(server.cert_dir), f"oci:{layout}:base", f"docker://{ref}")
    return ref


@pytest.fixture
def docker_trusts(server: AuthServer) -> Iterator[Path]:
    """dockerd trusts the private CA for this registry while the test runs."""
    certs = Path("/etc/docker/certs.d") / server.address
    certs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(server.ca, certs / "ca.crt")
    yield certs
    shutil.rmtree(certs, ignore_errors=True)


def test_docker_login_push_pull_logout(server: AuthServer, image, dockerd: Dockerd,
                                       docker_trusts: Path, tmp_path: Path) -> None:
    store, _, digest = image
    config = tmp_path / "docker-config"
    config.mkdir()
    private, public = f"{server.address}/team-a/docker:1", f"{server.address}/public/docker:1"
    descriptor = Descriptor(media_type=MediaType.OCI_MANIFEST, digest=digest,
                            size=store.info(digest).size)
    archive = tmp_path / "image.tar"
    write_docker_archive(archive, store, [ArchiveImage(load_image(store, descriptor),
                                                       (private, public))])
    docker("load", "-i", str(archive))

    def client(*args: str, check: bool = True, password: str | None = None
               ) -> subprocess.CompletedProcess[bytes]:
        stdin = None if password is None else f"{password}\n".encode()
        return docker("--config", str(config), *args, check=check, input=stdin)

    try:
        login = client("login", server.address, "-u", "alice", "--password-stdin",
                       password=PASSWORDS["alice"])
        assert b"Login Succeeded" in login.stdout
        saved = json.loads((config / "config.json").read_text())["auths"][server.address]
        assert saved.get("identitytoken"), saved
        assert "Pushed" in client("push", private).stdout.decode()
        client("push", public)
        client("rmi", private, public)
        client("pull", private)
        assert client("run", "--rm", private).stdout.decode().strip() == GREETING
        client("logout", server.address)
        after = json.loads((config / "config.json").read_text())
        assert server.address not in after.get("auths", {})
        client("rmi", private)
        refused = client("pull", private, check=False)
        assert refused.returncode != 0
        assert re.search(r"denied|unauthorized", refused.stderr.decode(), re.I)
        client("pull", public)

        client("login", server.address, "-u", "reader", "--password-stdin",
               password=PASSWORDS["reader"])
        client("pull", private)
        client("tag", private, f"{server.address}/team-a/docker:2")
        refused = client("push", f"{server.address}/team-a/docker:2", check=False)
        assert refused.returncode != 0
        assert "denied" in refused.stderr.decode().lower(), refused.stderr
        client("logout", server.address)
    finally:
        docker("rmi", "-f", private, public, f"{server.address}/team-a/docker:2", check=False)


def test_skopeo_copy_with_dest_creds(server: AuthServer, image, isolated: dict[str, str],
                                     tmp_path: Path) -> None:
    _, layout, digest = image
    skopeo, cert_dir = require("skopeo"), str(server.cert_dir)
    ref = f"docker://{server.address}/team-a/skopeo:1"
    run(skopeo, "copy", "--dest-creds", creds("alice"), "--dest-cert-dir", cert_dir,
        f"oci:{layout}:base", ref, env=isolated)
    raw = run(skopeo, "inspect", "--raw", "--creds", creds("reader"), "--cert-dir", cert_dir,
              ref, env=isolated).stdout
    assert Digest.from_bytes(raw.encode()) == digest
    out = tmp_path / "out"
    run(skopeo, "copy", "--src-creds", creds("dave"), "--src-cert-dir", cert_dir, ref,
        f"oci:{out}:copy", env=isolated)
    assert json.loads((out / "index.json").read_text())["manifests"][0]["digest"] == str(digest)
    denied = run(skopeo, "copy", "--dest-creds", creds("reader"), "--dest-cert-dir", cert_dir,
                 f"oci:{layout}:base", f"docker://{server.address}/team-a/skopeo:2",
                 env=isolated, check=False)
    assert denied.returncode != 0 and "denied" in denied.stderr.lower(), denied.stderr
    other_team = run(skopeo, "inspect", "--raw", "--creds", creds("carol"), "--cert-dir",
                     cert_dir, ref, env=isolated, check=False)
    assert other_team.returncode != 0
    untrusted = run(skopeo, "inspect", "--raw", "--creds", creds("alice"), ref, env=isolated,
                    check=False)
    assert untrusted.returncode != 0 and "certificate" in untrusted.stderr.lower()


def test_podman_login_push_pull(server: AuthServer, image, isolated: dict[str, str]) -> None:
    _, layout, _ = image
    podman, cert_dir = require("podman"), str(server.cert_dir)
    src = seed(server, layout, "team-a/podman-src")
    dst = f"{server.address}/team-a/podman-dst:1"
    run(podman, "login", "--cert-dir", cert_dir, "-u", "alice", "--password-stdin",
        server.address, stdin=f"{PASSWORDS['alice']}\n", env=isolated)
    try:
        run(podman, "pull", "--cert-dir", cert_dir, src, env=isolated)
        out = run(podman, "--runtime", "runc", "run", "--rm", src, env=isolated).stdout
        assert out.strip() == GREETING
        run(podman, "tag", src, dst, env=isolated)
        run(podman, "push", "--cert-dir", cert_dir, dst, env=isolated)
        run(podman, "rmi", "-f", src, dst, env=isolated)
        run(podman, "pull", "--cert-dir", cert_dir, dst, env=isolated)
        run(podman, "logout", server.address, env=isolated)
        refused = run(podman, "pull", "--cert-dir", cert_dir, src, env=isolated, check=False)
        assert refused.returncode != 0
    finally:
        run(podman, "rmi", "-f", src, dst, env=isolated, check=False)


def test_buildah_push_with_creds(server: AuthServer, image, isolated: dict[str, str]) -> None:
    _, layout, _ = image
    buildah, cert_dir = require("buildah"), str(server.cert_dir)
    src = seed(server, layout, "team-a/buildah-src")
    dst = f"docker://{server.address}/team-a/buildah:1"
    container = run(buildah, "from", "--creds", creds("alice"), "--cert-dir", cert_dir, src,
                    env=isolated).stdout.strip().splitlines()[-1]
    try:
        run(buildah, "config", "--label", "made-by=buildah", container, env=isolated)
        run(buildah, "commit", container, "authpeers/buildah:1", env=isolated)
        run(buildah, "push", "--creds", creds("alice"), "--cert-dir", cert_dir,
            "authpeers/buildah:1", dst, env=isolated)
        denied = run(buildah, "push", "--creds", creds("carol"), "--cert-dir", cert_dir,
                     "authpeers/buildah:1", f"docker://{server.address}/team-a/buildah:2",
                     env=isolated, check=False)
        assert denied.returncode != 0
    finally:
        run(buildah, "rm", container, env=isolated, check=False)
        run(buildah, "rmi", "-f", "authpeers/buildah:1", src, env=isolated, check=False)
    raw = run(require("skopeo"), "inspect", "--creds", creds("alice"), "--cert-dir", cert_dir,
              dst, env=isolated).stdout
    assert json.loads(raw)["Labels"]["made-by"] == "buildah"


def curl(*args: str) -> tuple[int, dict[str, str], str]:
    """Run curl; the status, the last response's headers (lower-cased) and the body."""
    proc = subprocess.run(["curl", "-s", "-D", "-", *args], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    head, _, body = proc.stdout.decode().partition("\r\n\r\n")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:])}
    return status, headers, body


def test_curl_token_flow(server: AuthServer, image) -> None:
    _, layout, digest = image
    seed(server, layout, "team-a/curl")
    ca, base = str(server.ca), f"https://{server.address}"
    status, headers, _ = curl("--cacert", ca, f"{base}/v2/")
    assert status == 401
    challenge = dict(re.findall(r'(\w+)="([^"]*)"', headers["www-authenticate"]))
    assert challenge == {"realm": f"{base}/token", "service": SERVICE}
    query = f"service={challenge['service']}&scope=repository:team-a/curl:pull"
    status, _, body = curl("--cacert", ca, "-u", creds("reader"),
                           f"{challenge['realm']}?{query}")
    assert status == 200, body
    token = json.loads(body)["token"]
    status, headers, body = curl(
        "--cacert", ca, "-H", f"Authorization: Bearer {token}", "-H",
        "Accept: application/vnd.oci.image.manifest.v1+json", f"{base}/v2/team-a/curl/manifests/1")
    assert status == 200, body
    assert headers["docker-content-digest"] == str(digest)
    status, _, _ = curl("--cacert", ca, "-u", "reader:wrong", f"{challenge['realm']}?{query}")
    assert status == 401
    status, _, body = curl("--cacert", ca, "-H", f"Authorization: Bearer {token}", "-X",
                           "POST", f"{base}/v2/team-a/curl/blobs/uploads/")
    assert status == 403 and json.loads(body)["errors"][0]["code"] == "DENIED"
