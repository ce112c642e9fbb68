"""``/api/v1`` robot accounts and CLI secrets against a real ``registry serve --tls``: a
project admin manages its project's robots (the secret is in the answer once, the robot's
token carries only its actions), a developer and a robot are refused, bad bodies are JSON
errors naming the field, and users manage their own CLI secrets only."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import jwt
import pytest

from registry.testing.deadline import time_limit
from tests.registry.server import error_codes
from tests.registry.test_auth_server import PASSWORDS, SERVICE, AuthServer, start_auth_server

TIMEOUT = 240


@pytest.fixture(autouse=True)
def deadline() -> Iterator[None]:
    """Fail a case that runs longer than TIMEOUT seconds instead of hanging the session."""
    with time_limit(TIMEOUT):
        yield


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """A TLS registry with token auth, admin ``root``, users alice, reader and carol."""
    srv = start_auth_server(tmp_path_factory.mktemp("robots-api"))
    yield srv
    srv.stop()


def as_user(server: AuthServer, user: str) -> httpx.Client:
    """An API client with ``user``'s password."""
    return server.client(auth=(user, PASSWORDS[user]))


@pytest.fixture
def project(server: AuthServer) -> str:
    """A new project: alice its admin, reader a developer."""
    name = f"api-{uuid.uuid4().hex[:8]}"
    with as_user(server, "root") as c:
        assert c.post("/api/v1/projects", json={"name": name}).status_code == 201
        for member, role in (("alice", "admin"), ("reader", "developer")):
            r = c.post(f"/api/v1/projects/{name}/members", json={"member": member,
                                                                   "role": role})
            assert r.status_code in (200, 201), r.text
    return name


def token_access(server: AuthServer, name: str, secret: str, *scopes: str
                 ) -> httpx.Response:
    """``GET /token`` with a robot's credentials."""
    with server.client() as c:
        return c.get("/token", params={"service": SERVICE, "scope": list(scopes)},
                     auth=(name, secret))


def test_a_project_admin_manages_its_robots(server: AuthServer, project: str) -> None:
    with as_user(server, "alice") as c:
        r = c.post(f"/api/v1/projects/{project}/robots",
                   json={"name": "ci", "actions": ["pull", "push"], "expires_days": 30})
        assert r.status_code == 201, r.text
        made = r.json()
        name = f"robot${project}+ci"
        assert made["name"] == name and made["actions"] == ["pull", "push"]
        assert made["secret"] and made["expires_at"]
        r = token_access(server, name, made["secret"], f"repository:{project}/app:pull,push",
                         "repository:elsewhere/app:pull")
        assert r.status_code == 200, r.text
        claims = jwt.decode(r.json()["token"], options={"verify_signature": False})
        assert claims["access"] == [{"type": "repository", "name": f"{project}/app",
                                     "actions": ["pull", "push"]}]
        listed = c.get(f"/api/v1/projects/{project}/robots").json()
        assert [x["name"] for x in listed] == [name] and "secret" not in listed[0]
        assert c.get(f"/api/v1/projects/{project}/robots/ci").json()["state"] == "enabled"
        r = c.patch(f"/api/v1/projects/{project}/robots/{name}", json={"disabled": True})
        assert r.status_code == 200 and r.json()["state"] == "disabled"
        refused = token_access(server, name, made["secret"], f"repository:{project}/a:pull")
        assert refused.status_code == 401 and "disabled" in refused.text
        c.patch(f"/api/v1/projects/{project}/robots/ci", json={"disabled": False})
        rotated = c.post(f"/api/v1/projects/{project}/robots/ci/rotate")
        assert rotated.status_code == 200 and rotated.json()["secret"] != made["secret"]
        assert token_access(server, name, made["secret"]).status_code == 401
        assert token_access(server, name, rotated.json()["secret"]).status_code == 200
        # The robot itself may not manage robots.
        with server.client(auth=(name, rotated.json()["secret"])) as robot:
            r = robot.get(f"/api/v1/projects/{project}/robots")
            assert r.status_code == 403 and error_codes(r) == ["DENIED"]
        assert c.delete(f"/api/v1/projects/{project}/robots/ci").status_code == 204
        r = c.get(f"/api/v1/projects/{project}/robots/ci")
        assert r.status_code == 404 and error_codes(r) == ["NOT_FOUND"]


def test_bad_requests_and_refusals(server: AuthServer, project: str) -> None:
    base = f"/api/v1/projects/{project}/robots"
    with as_user(server, "reader") as c:
        r = c.post(base, json={"name": "x", "actions": "pull"})
        assert r.status_code == 403 and error_codes(r) == ["DENIED"]
        assert "needs role admin" in r.json()["errors"][0]["message"]
    with as_user(server, "alice") as c:
        assert c.post(base, json={"name": "dup", "actions": "pull"}).status_code == 201
        r = c.post(base, json={"name": "dup", "actions": "pull"})
        assert r.status_code == 409 and "exists already" in r.text
        r = c.post(base, json={"name": "x", "actions": ["pull", "write"]})
        assert r.status_code == 400 and "unknown action 'write'" in r.text
        r = c.post(base, json={"name": "x", "actions": "pull", "expires_days": 0})
        assert r.status_code == 400 and "--expires" in r.text
        r = c.get(f"/api/v1/projects/{project}/robots/robot$other+dup")
        assert r.status_code == 404
        r = c.get("/api/v1/projects/no-such-project/robots")
        assert r.status_code in (403, 404), r.text
        listed = c.get(base).json()
        assert [x["name"] for x in listed] == [f"robot${project}+dup"]


def test_users_manage_their_own_cli_secrets(server: AuthServer) -> None:
    with as_user(server, "carol") as c:
        r = c.post("/api/v1/users/carol/secrets", json={"name": "laptop"})
        assert r.status_code == 201, r.text
        secret = r.json()["secret"]
        assert r.json()["name"] == "laptop"
        assert [s["name"] for s in c.get("/api/v1/users/carol/secrets").json()] == ["laptop"]
        r = c.post("/api/v1/users/alice/secrets", json={"name": "stolen"})
        assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    with server.client(auth=("carol", secret)) as c:
        assert c.get("/api/v1/me").json()["name"] == "carol"
    with as_user(server, "root") as c:
        assert c.delete("/api/v1/users/carol/secrets/laptop").status_code == 204
    with server.client(auth=("carol", secret)) as c:
        assert c.get("/api/v1/me").status_code == 401


def test_the_openapi_schema_lists_the_robot_routes(server: AuthServer) -> None:
    with server.client() as c:
        paths = c.get("/api/v1/openapi.json").json()["paths"]
    assert "/projects/{project}/robots" in paths
    assert "/users/{user}/secrets" in paths
