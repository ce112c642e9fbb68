"""The management pages on the other setups the registry runs in: with its metadata, users,
robots, rules, webhooks and audit log in PostgreSQL (``metadata_url``), and without
authentication (``auth = "none"``), where every visitor may do everything and there are no
users to manage."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.testing.engines import PostgresEngine
from tests.registry.projects_env import USERS, eventually, registry_cmd, start_project_server
from tests.registry.server import Api, RegistryServer
from tests.registry.ui.conftest import csrf_of
from tests.registry.ui.test_admin_pages import (
    ADMIN,
    CONFIG,
    PROJECT,
    AdminSite,
    _setup,
    error_of,
    flashes,
    members,
    post,
)


@pytest.fixture(scope="module")
def pg_site(postgres: PostgresEngine, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[AdminSite, str]]:
    """The registry of the page tests with its state in PostgreSQL, and its database URL."""
    url = postgres.create_database("ui_admin")
    server = start_project_server(tmp_path_factory.mktemp("ui-admin-pg"), config=CONFIG,
                                  metadata_url=url, setup=_setup)
    try:
        token = server.token("dev", f"repository:{PROJECT}/app:pull,push",
                             password=USERS["dev"])
        with server.as_token(token) as c:
            Api(c).image(f"{PROJECT}/app", "v1", layers=2)
        yield AdminSite(server), url
    finally:
        server.stop()


def _token_is(site: AdminSite, user: str, password: str, status: int) -> None:
    assert site.token_status(user, password) == status


def test_pages_on_postgresql(pg_site: tuple[AdminSite, str]) -> None:
    site, url = pg_site
    gc = registry_cmd(site.server.root, "gc", "--grace", "0",
                      env={"REGISTRY_METADATA_URL": url})
    assert gc.returncode == 0, gc.stderr
    here = f"{ADMIN}/projects/{PROJECT}"
    with site.browser_like("root") as root:
        page = root.get(here)
        assert page.status_code == 200 and "<title>app</title>" in page.text
        r = post(root, here, op="add_member", member="carol", role="maintainer")
        assert flashes(r) == [("ok", f"carol added to project {PROJECT} as maintainer")]
        assert members(site, PROJECT)["carol"] == "maintainer"
        r = post(root, f"{here}/robots", op="create", robot="pg", action_pull="on")
        secret = html.unescape(re.search(r'id="robot-secret" readonly value="([^"]+)"',
                                         r.text).group(1))
        assert site.token_status(f"robot${PROJECT}+pg", secret) == 200
        r = post(root, f"{here}/policies", op="add_immutable", tags="v*")
        assert r.status_code == 200 and flashes(r)[0][0] == "ok"
        r = post(root, f"{here}/webhooks", op="add", url="http://127.0.0.1:9/hook",
                 hook="pg", event_push="on")
        assert r.status_code == 200 and flashes(r)[0][1].startswith("webhook pg added")
        r = post(root, f"{ADMIN}/users", op="add", user="pguser", password="pg-pw",
                 again="pg-pw")
        assert flashes(r) == [("ok", "user pguser added")]
        # every worker re-reads the users table within a few seconds
        eventually(lambda: _token_is(site, "pguser", "pg-pw", 200))
        r = post(root, f"{ADMIN}/users", op="remove", user="pguser")
        assert r.status_code == 200
        eventually(lambda: _token_is(site, "pguser", "pg-pw", 401))

        page = root.get(f"{ADMIN}/gc")
        assert re.search(r'<td class="state-done">done</td>', page.text), \
            page.text[page.text.find('id="gc-status"'):]

        def logged() -> None:  # the server writes its audit events off the request path
            text = html.unescape(root.get(f"{here}/activity").text)
            assert "robot.create" in text and "immutable.add" in text
            assert "member=carol role=maintainer" in text

        eventually(logged)


@pytest.fixture(scope="module")
def open_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """``registry serve`` without TLS and without authentication."""
    server = RegistryServer(Path(tmp_path_factory.mktemp("ui-admin-open")) / "root")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_pages_without_authentication(open_registry: RegistryServer) -> None:
    with open_registry.client(follow_redirects=False) as visitor:
        page = visitor.get(f"{ADMIN}/projects")
        assert page.status_code == 200 and 'id="create-project"' in page.text
        r = visitor.post(f"{ADMIN}/projects", data={"csrf": csrf_of(page.text),
                                                    "name": "open", "public": "on"})
        assert flashes(r) == [("ok", "project open created (public, quota unlimited)")]
        r = post(visitor, f"{ADMIN}/projects/open", op="quota", quota="3MiB")
        assert flashes(r) == [("ok", "the quota of project open is 3.0 MiB now")]
        assert visitor.get("/api/v1/projects/open").json()["quota"] == 3 << 20
        assert 'id="nav-admin-users"' not in r.text
        for path in ("/users", "/account"):
            r = visitor.get(ADMIN + path)
            assert r.status_code == 404 and "without authentication" in error_of(r), path
        r = visitor.get(f"{ADMIN}/access")
        assert r.status_code == 200 and "the rules are not used" in r.text
        r = visitor.post(f"{ADMIN}/projects", data={"name": "no-token"})
        assert r.status_code == 403 and "CSRF token" in error_of(r)


def test_pages_with_an_authorizer_of_the_operators_own(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    root = Path(tmp_path_factory.mktemp("ui-admin-authorizer")) / "root"
    server = RegistryServer(root, env={
        "REGISTRY_AUTHORIZER": "tests.registry.server:role_authorizer"}).start()
    try:
        with server.client(follow_redirects=False) as visitor:
            for path in ("/", "/projects", "/users"):
                r = visitor.get(ADMIN + path)
                assert r.status_code == 403, path
                assert "decided by the authorizer tests.registry.server:role_authorizer" \
                    in error_of(r)
    finally:
        server.stop()
