"""The audit log and webhooks with the real clients: skopeo, podman and docker push to and
pull from a ``registry serve --tls`` and skopeo deletes; the project's webhook gets a signed
PUSH_ARTIFACT for each push and a DELETE_ARTIFACT for the delete, and the audit log lists
each push, pull and delete with the user and the client address."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from layerstore.content.local import LocalStore
from layerstore.digest import Digest
from tests.peers import Dockerd, docker, require
from tests.registry.images import busybox_image, layout_of
from tests.registry.receiver import Receiver
from tests.registry.test_audit_webhooks import SECRET, USERS, Setup, start, until
from tests.registry.test_auth_peers import PODMAN_CONF, run
from tests.registry.test_auth_policy_peers import DockerClient


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path
          ) -> tuple[LocalStore, Path, Digest]:
    """An OCI layout holding busybox as ``base``: the store, the layout and its digest."""
    tmp = tmp_path_factory.mktemp("audit-images")
    store = LocalStore(tmp / "store")
    base = busybox_image(store, busybox_rootfs)
    return store, layout_of(tmp / "layout", store, {"base": base.manifest}), \
        base.manifest.digest


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A webhook receiver that takes everything."""
    recv = Receiver().start()
    yield recv
    recv.stop()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Setup]:
    """A TLS registry whose project ``team`` sends its events to the receiver."""
    (found,) = start(tmp_path_factory.mktemp("audit-peers"))
    found.cli("webhook", "add", "team", "--url", receiver.url("/peers"), "--secret-stdin",
              stdin=f"{SECRET}\n")
    yield found
    found.server.stop()


def audited(setup: Setup, repository: str, action: str) -> list[dict[str, Any]]:
    """The audit events of ``action`` on ``repository``, once there are some."""
    def found() -> list[dict[str, Any]]:
        return [e for e in setup.cli("audit", "--project", "team", "--json", "--limit", "1000")
                if e["repository"] == repository and e["action"] == action]
    return until(found, f"a {action} of {repository} in the audit log")  # type: ignore[no-any-return]


def pushes_for(receiver: Receiver, repository: str) -> list[dict[str, Any]]:
    """The PUSH_ARTIFACT payloads the receiver got for ``repository``, once there are some."""
    def found() -> list[dict[str, Any]]:
        return [r.doc for r in receiver.at("/peers") if r.signed_with(SECRET)
                and r.doc["event_data"]["repository"]["repo_full_name"] == repository]
    return until(found, f"a delivery for {repository}")  # type: ignore[no-any-return]


def isolated(tmp_path: Path) -> dict[str, str]:
    """Environment that keeps podman's and skopeo's credentials in ``tmp_path``."""
    conf = tmp_path / "containers.conf"
    conf.write_text(PODMAN_CONF)
    auth = tmp_path / "auth.json"
    auth.write_text('{"auths": {}}\n')
    return {"CONTAINERS_CONF": str(conf), "REGISTRY_AUTH_FILE": str(auth)}


def test_skopeo_push_and_pull(setup: Setup, receiver: Receiver, image, tmp_path: Path
                              ) -> None:
    _, layout, digest = image
    skopeo = require("skopeo")
    env = isolated(tmp_path)
    repository = f"team/skopeo-{uuid.uuid4().hex[:8]}"
    ref = f"docker://{setup.server.address}/{repository}:1"
    cert_dir, creds = str(setup.server.cert_dir), f"ci:{USERS['ci']}"
    run(skopeo, "copy", "--dest-creds", creds, "--dest-cert-dir", cert_dir,
        f"oci:{layout}:base", ref, env=env)
    run(skopeo, "inspect", "--raw", "--creds", creds, "--cert-dir", cert_dir, ref, env=env)
    (push,) = pushes_for(receiver, repository)
    assert push["type"] == "PUSH_ARTIFACT" and push["operator"] == "ci"
    assert push["event_data"]["resources"] == [
        {"digest": str(digest), "tag": "1",
         "resource_url": f"{setup.server.address}/{repository}:1"}]
    (pushed,) = audited(setup, repository, "push")
    assert (pushed["user"], pushed["address"], pushed["reference"], pushed["digest"]) == (
        "ci", "127.0.0.1", "1", str(digest))
    (pulled,) = audited(setup, repository, "pull")
    assert (pulled["user"], pulled["address"], pulled["digest"]) == (
        "ci", "127.0.0.1", str(digest))
    run(skopeo, "delete", "--creds", f"ops:{USERS['ops']}", "--cert-dir", cert_dir, ref,
        env=env)
    (deleted,) = audited(setup, repository, "delete")
    assert (deleted["user"], deleted["address"], deleted["digest"]) == (
        "ops", "127.0.0.1", str(digest))
    (delete,) = until(lambda: [r.doc for r in receiver.at("/peers")
                               if r.doc["type"] == "DELETE_ARTIFACT" and
                               r.doc["event_data"]["repository"]["repo_full_name"] ==
                               repository], "the DELETE_ARTIFACT delivery")
    assert delete["operator"] == "ops"
    assert delete["event_data"]["resources"][0]["digest"] == str(digest)


def test_docker_push_and_pull(setup: Setup, receiver: Receiver, image, dockerd: Dockerd,
                              tmp_path: Path) -> None:
    store, _, digest = image
    repository = f"team/docker-{uuid.uuid4().hex[:8]}"
    ref = f"{setup.server.address}/{repository}:1"
    client = DockerClient(setup.server, tmp_path / "docker-config")
    try:
        client.load(store, digest, tmp_path / "image.tar", ref)
        client("login", setup.server.address, "-u", "ci", "--password-stdin",
               password=USERS["ci"])
        assert "Pushed" in client("push", ref).stdout.decode()
        client("rmi", ref)
        client("pull", ref)
        (push,) = pushes_for(receiver, repository)
        assert push["operator"] == "ci" and push["event_data"]["resources"][0]["tag"] == "1"
        pushed_digest = push["event_data"]["resources"][0]["digest"]
        (pushed,) = audited(setup, repository, "push")
        assert (pushed["user"], pushed["address"], pushed["digest"]) == (
            "ci", "127.0.0.1", pushed_digest)
        pulled = audited(setup, repository, "pull")
        assert {(e["user"], e["address"]) for e in pulled} == {("ci", "127.0.0.1")}
        assert pushed_digest in {e["digest"] for e in pulled}
    finally:
        docker("rmi", "-f", ref, check=False)
        client.close()


def test_podman_push_and_pull(setup: Setup, receiver: Receiver, image, tmp_path: Path
                              ) -> None:
    _, layout, digest = image
    podman, skopeo = require("podman"), require("skopeo")
    env = isolated(tmp_path)
    cert_dir = str(setup.server.cert_dir)
    src = f"{setup.server.address}/team/podman-src-{uuid.uuid4().hex[:8]}:1"
    repository = f"team/podman-{uuid.uuid4().hex[:8]}"
    dst = f"{setup.server.address}/{repository}:2"
    run(skopeo, "copy", "--dest-creds", f"ci:{USERS['ci']}", "--dest-cert-dir", cert_dir,
        f"oci:{layout}:base", f"docker://{src}", env=env)
    run(podman, "login", "--cert-dir", cert_dir, "-u", "ci", "--password-stdin",
        setup.server.address, stdin=f"{USERS['ci']}\n", env=env)
    try:
        run(podman, "pull", "--cert-dir", cert_dir, src, env=env)
        run(podman, "tag", src, dst, env=env)
        run(podman, "push", "--cert-dir", cert_dir, dst, env=env)
        (push,) = pushes_for(receiver, repository)
        assert push["operator"] == "ci" and push["event_data"]["resources"][0]["tag"] == "2"
        (pushed,) = audited(setup, repository, "push")
        assert (pushed["user"], pushed["address"], pushed["reference"]) == (
            "ci", "127.0.0.1", "2")
        pulled = audited(setup, src.split("/", 1)[1].rsplit(":", 1)[0], "pull")
        assert {(e["user"], e["address"]) for e in pulled} == {("ci", "127.0.0.1")}
        assert str(digest) in {e["digest"] for e in pulled}
    finally:
        run(podman, "rmi", "-f", src, dst, env=env, check=False)
