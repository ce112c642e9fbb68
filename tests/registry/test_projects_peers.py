"""Projects with the real clients: docker, podman and skopeo log in to a ``registry serve
--tls`` with projects; a developer pushes, a guest is refused and docker prints why,
anonymous clients pull a public project, a maintainer deletes, and a push over the quota
is refused with nothing stored."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers import Dockerd, docker, require
from tests.registry.projects_env import USERS, registry_cmd, start_project_server
from tests.registry.test_auth_peers import run
from tests.registry.test_auth_policy_peers import (  # noqa: F401 - fixtures
    DockerClient,
    image,
    isolated,
)
from tests.registry.test_auth_server import AuthServer

TINY_QUOTA = "64KiB"


def _setup(cmd) -> None:  # type: ignore[no-untyped-def]
    cmd("project", "create", "team")
    cmd("project", "create", "pub", "--public")
    cmd("project", "create", "tiny", "--quota", TINY_QUOTA)
    for project in ("team", "pub", "tiny"):
        cmd("project", "member", "add", project, "dev", "--role", "developer")
    cmd("project", "member", "add", "team", "guest", "--role", "guest")
    cmd("project", "member", "add", "team", "maint", "--role", "maintainer")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """A registry with projects team (private), pub (public) and tiny (64 KiB quota)."""
    srv = start_project_server(tmp_path_factory.mktemp("projects-peers"), setup=_setup)
    yield srv
    srv.stop()


def creds(user: str) -> str:
    """``user:password``."""
    return f"{user}:{USERS[user]}"


def name(prefix: str) -> str:
    """A repository name within a project that no other run uses."""
    return f"{prefix}/app-{uuid.uuid4().hex[:8]}"


def test_docker_developer_pushes_guest_is_told_why_anonymous_pulls_public(
        server: AuthServer, image, dockerd: Dockerd, tmp_path: Path) -> None:  # noqa: F811
    store, _, digest = image
    team_ref = f"{server.address}/{name('team')}:1"
    pub_ref = f"{server.address}/{name('pub')}:1"
    client = DockerClient(server, tmp_path / "docker-config")
    try:
        client.load(store, digest, tmp_path / "image.tar", team_ref, pub_ref)
        client("login", server.address, "-u", "dev", "--password-stdin",
               password=USERS["dev"])
        assert "Pushed" in client("push", team_ref).stdout.decode()
        client("push", pub_ref)
        client("login", server.address, "-u", "guest", "--password-stdin",
               password=USERS["guest"])
        retag = team_ref.replace(":1", ":guest")
        client("tag", team_ref, retag)
        refused = client("push", retag, check=False)
        assert refused.returncode != 0
        repo = retag.split("/", 1)[1].rsplit(":", 1)[0]
        assert (f"push on {repo}: user guest has role guest in project team, which allows "
                "pull") in refused.stderr.decode(), refused.stderr
        client("rmi", team_ref, retag)
        client("pull", team_ref)
        client("logout", server.address)
        client("rmi", team_ref, pub_ref)
        client("pull", pub_ref)
        refused = client("pull", team_ref, check=False)
        assert refused.returncode != 0
        assert "project team is private; log in" in refused.stderr.decode(), refused.stderr
    finally:
        docker("rmi", "-f", team_ref, pub_ref, check=False)
        client.close()


def test_docker_push_over_the_quota_is_refused_with_nothing_stored(
        server: AuthServer, image, dockerd: Dockerd, tmp_path: Path) -> None:  # noqa: F811
    store, _, digest = image
    repo = name("tiny")
    ref = f"{server.address}/{repo}:1"
    client = DockerClient(server, tmp_path / "docker-config")
    try:
        client.load(store, digest, tmp_path / "image.tar", ref)
        client("login", server.address, "-u", "dev", "--password-stdin",
               password=USERS["dev"])
        refused = client("push", ref, check=False)
        assert refused.returncode != 0
        err = refused.stderr.decode()
        assert "quota exceeded: project tiny has a quota of 64.0 KiB and uses" in err, err
        shown = registry_cmd(server.root, "project", "show", "tiny", "--json",
                             config=server.root.parent / "config.toml")
        usage = json.loads(shown.stdout)["usage"]
        assert usage["bytes"] < 64 * 1024
        with server.client() as c:
            token = server.token("dev", f"repository:{repo}:pull", password=USERS["dev"])
            r = c.get(f"/v2/{repo}/manifests/1", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 404
    finally:
        docker("rmi", "-f", ref, check=False)
        client.close()


def test_skopeo_and_podman_with_roles(server: AuthServer, image,  # noqa: F811
                                      isolated: dict[str, str]) -> None:  # noqa: F811
    _, layout, _ = image
    skopeo, podman, cert_dir = require("skopeo"), require("podman"), str(server.cert_dir)
    repo = name("team")
    ref = f"docker://{server.address}/{repo}:1"
    refused = run(skopeo, "copy", "--dest-creds", creds("guest"), "--dest-cert-dir",
                  cert_dir, f"oci:{layout}:base", ref, env=isolated, check=False)
    assert refused.returncode != 0
    assert "user guest has role guest in project team" in refused.stderr, refused.stderr
    run(skopeo, "copy", "--dest-creds", creds("dev"), "--dest-cert-dir", cert_dir,
        f"oci:{layout}:base", ref, env=isolated)
    run(skopeo, "inspect", "--raw", "--creds", creds("guest"), "--cert-dir", cert_dir, ref,
        env=isolated)
    denied = run(skopeo, "delete", "--creds", creds("dev"), "--cert-dir", cert_dir, ref,
                 env=isolated, check=False)
    assert denied.returncode != 0
    pulled = f"{server.address}/{repo}:1"
    run(podman, "login", "--cert-dir", cert_dir, "-u", "guest", "--password-stdin",
        server.address, stdin=f"{USERS['guest']}\n", env=isolated)
    try:
        run(podman, "pull", "--cert-dir", cert_dir, pulled, env=isolated)
        pushed = run(podman, "push", "--cert-dir", cert_dir, pulled,
                     f"{server.address}/{repo}:2", env=isolated, check=False)
        assert pushed.returncode != 0
    finally:
        run(podman, "rmi", "-f", pulled, env=isolated, check=False)
        run(podman, "logout", server.address, env=isolated, check=False)
    run(skopeo, "delete", "--creds", creds("maint"), "--cert-dir", cert_dir, ref,
        env=isolated)
    gone = run(skopeo, "inspect", "--raw", "--creds", creds("maint"), "--cert-dir", cert_dir,
               ref, env=isolated, check=False)
    assert gone.returncode != 0
