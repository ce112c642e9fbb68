"""Proxy-cache projects: a project created with ``--proxy URL`` (by ``registry project
create`` or the management API) serves ``PROJECT/<repository>`` from CNCF distribution,
next to a project of the registry's own, on a TLS registry with token authentication."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from registry.testing.deadline import time_limit
from tests.peers import require
from tests.registry.projects_env import USERS, registry_cmd, start_project_server
from tests.registry.proxy_env import Upstream, start_upstream
from tests.registry.server import error_codes
from tests.registry.test_auth_server import AuthServer
from tests.registry.test_proxy import ACCEPT, pull


@dataclass
class Setup:
    """The upstream and our registry with project ``hub`` proxying it."""

    upstream: Upstream
    server: AuthServer


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Iterator[Setup]:
    """Start the upstream, then our registry with ``hub`` (public, a proxy cache of it) and
    ``own`` (a project of its own)."""
    tmp = tmp_path_factory.mktemp("proxy-projects")
    upstream = start_upstream(tmp / "upstream", busybox_rootfs)

    def projects(cmd) -> None:  # type: ignore[no-untyped-def]
        done = cmd("project", "create", "hub", "--public", "--proxy", upstream.proxy.url)
        assert "is a proxy cache of" in done.stdout
        shown = cmd("project", "show", "hub")
        assert f"proxy cache of: {upstream.proxy.url}" in shown.stdout
        cmd("project", "create", "own")

    (tmp / "registry").mkdir()
    try:
        server = start_project_server(tmp / "registry", setup=projects)
    except BaseException:
        upstream.stop()
        raise
    yield Setup(upstream, server)
    server.stop()
    upstream.stop()


def skopeo_pull(server: AuthServer, reference: str, dest: Path) -> dict[str, object]:
    """Copy ``reference`` out of our registry anonymously with skopeo; the manifest."""
    proc = subprocess.run([require("skopeo"), "copy", "--src-tls-verify=false",
                           f"docker://{server.address}/{reference}", f"dir:{dest}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads((dest / "manifest.json").read_text()))


def test_a_proxy_project_serves_the_upstream_and_caches_it(setup: Setup,
                                                           tmp_path: Path) -> None:
    server, upstream = setup.server, setup.upstream
    with time_limit(300):
        skopeo_pull(server, "hub/library/busybox:latest", tmp_path / "first")
        token = server.token(None, "repository:hub/library/busybox:pull")
        with server.as_token(token) as client:
            assert pull(client, "hub/library/busybox", "latest")[0] == upstream.busybox
        assert upstream.proxy.count("GET", "/v2/library/busybox/blobs/") >= 2
        before = upstream.proxy.count()
        skopeo_pull(server, "hub/library/busybox:latest", tmp_path / "second")
        assert upstream.proxy.count() == before


def test_pushes_to_a_proxy_project_are_refused_and_own_projects_take_them(
        setup: Setup) -> None:
    server = setup.server
    with time_limit(120):
        token = server.token("root", "repository:hub/library/busybox:pull,push",
                             "repository:own/app:pull,push", password=USERS["root"])
        with server.as_token(token) as client:
            refused = client.post("/v2/hub/library/busybox/blobs/uploads/")
            assert refused.status_code == 405 and error_codes(refused) == ["UNSUPPORTED"]
            assert "pull-through cache of upstream --proxy of project hub" in refused.text
            accepted = client.post("/v2/own/app/blobs/uploads/")
            assert accepted.status_code == 202, accepted.text
            secret = b"a blob of the registry's own project"
            digest = "sha256:" + hashlib.sha256(secret).hexdigest()
            location = accepted.headers["location"]
            done = client.put(f"{location}{'&' if '?' in location else '?'}digest={digest}",
                              content=secret)
            assert done.status_code == 201, done.text
            for method in ("GET", "HEAD"):
                leaked = client.request(method, f"/v2/hub/library/busybox/blobs/{digest}")
                assert leaked.status_code == 404
            unknown = client.get("/v2/own/app/manifests/latest", headers={"Accept": ACCEPT})
            assert unknown.status_code == 404


def test_cached_images_of_a_proxy_project_may_be_deleted(setup: Setup) -> None:
    server, upstream = setup.server, setup.upstream
    with time_limit(120):
        token = server.token("root", "repository:hub/library/busybox:pull,delete",
                             password=USERS["root"])
        with server.as_token(token) as client:
            assert pull(client, "hub/library/busybox", "latest")[0] == upstream.busybox
            gone = client.delete(f"/v2/hub/library/busybox/manifests/{upstream.busybox}")
            assert gone.status_code == 202, gone.text
            assert pull(client, "hub/library/busybox", "latest")[0] == upstream.busybox


def test_the_management_api_creates_and_shows_a_proxy_project(setup: Setup) -> None:
    server, upstream = setup.server, setup.upstream
    with time_limit(120), server.client(auth=("root", USERS["root"])) as admin:
        created = admin.post("/api/v1/projects", json={
            "name": "hub2", "public": True, "proxy": upstream.proxy.url + "/"})
        assert created.status_code == 201, created.text
        assert created.json()["proxy"] == upstream.proxy.url
        assert admin.get("/api/v1/projects/hub2").json()["proxy"] == upstream.proxy.url
        assert "proxy" not in admin.get("/api/v1/projects/own").json()
        bad = admin.post("/api/v1/projects", json={"name": "hub3", "proxy": "ftp://x"})
        assert bad.status_code == 400 and "proxy: 'ftp://x' must be an http" in bad.text
        assert admin.get("/api/v1/projects/hub3").status_code == 404
    token = server.token(None, "repository:hub2/library/busybox:pull")
    with time_limit(120), server.as_token(token) as client:
        assert pull(client, "hub2/library/busybox", "latest")[0] == upstream.busybox


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://upstream.example", "--proxy: 'ftp://upstream.example' must be an http:// or "
                               "https:// URL"),
    ("http://no-such-upstream.invalid", "--proxy of project bad "
                                        "http://no-such-upstream.invalid is unreachable"),
])
def test_a_bad_proxy_is_refused_naming_the_flag(tmp_path: Path, url: str,
                                                message: str) -> None:
    with time_limit(120):
        done = registry_cmd(tmp_path / "root", "project", "create", "bad", "--proxy", url)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr
        listed = registry_cmd(tmp_path / "root", "project", "list")
        assert "bad" not in listed.stdout
