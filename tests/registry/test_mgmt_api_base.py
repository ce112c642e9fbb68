"""The management API's base against a real ``registry serve --tls``: its OpenAPI page,
``/api/v1/systeminfo`` for anyone, the caller by basic credentials and by a bearer token of
our ``/token`` endpoint, and the registry's JSON errors for bad credentials and unknown
endpoints."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.registry.server import RegistryServer, error_codes
from tests.registry.test_auth_server import PASSWORDS, AuthServer, start_auth_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """A TLS registry with token auth, admin ``root`` and user ``alice``."""
    srv = start_auth_server(tmp_path_factory.mktemp("api-base"))
    yield srv
    srv.stop()


def test_systeminfo_answers_anyone(server: AuthServer) -> None:
    with server.client() as c:
        r = c.get("/api/v1/systeminfo")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["auth_mode"] == "token" and doc["api_version"] == "v1"
    assert doc["metadata"] in ("sqlite", "postgresql")


def test_the_openapi_page_and_schema(server: AuthServer) -> None:
    with server.client() as c:
        page = c.get("/api/v1/docs")
        schema = c.get("/api/v1/openapi.json")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    assert "/api/v1/openapi.json" in page.text
    assert schema.status_code == 200
    assert "/systeminfo" in schema.json()["paths"]


def test_the_caller_by_basic_credentials(server: AuthServer) -> None:
    with server.client(auth=("alice", PASSWORDS["alice"])) as c:
        r = c.get("/api/v1/me")
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "alice", "groups": ["team-a"], "admin": False, "via": "basic"}
    with server.client(auth=("root", PASSWORDS["root"])) as c:
        assert c.get("/api/v1/me").json()["admin"] is True


def test_the_caller_by_bearer_token(server: AuthServer) -> None:
    token = server.token("alice", "repository:team-a/app:pull")
    with server.as_token(token) as c:
        r = c.get("/api/v1/me")
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "alice" and r.json()["via"] == "bearer"


def test_bad_or_missing_credentials_are_401_with_a_json_error(server: AuthServer) -> None:
    with server.client() as c:
        missing = c.get("/api/v1/me")
    with server.client(auth=("alice", "wrong")) as c:
        wrong = c.get("/api/v1/me")
    with server.as_token("not-a-token") as c:
        bad_token = c.get("/api/v1/me")
    for r in (missing, wrong, bad_token):
        assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"]
        assert r.headers["www-authenticate"].startswith("Basic realm=")
    assert "incorrect username or password" in wrong.json()["errors"][0]["message"]
    assert "bearer token refused" in bad_token.json()["errors"][0]["message"]


def test_an_unknown_endpoint_is_a_json_404(server: AuthServer) -> None:
    with server.client() as c:
        r = c.get("/api/v1/no-such-thing")
    assert r.status_code == 404 and error_codes(r) == ["NOT_FOUND"]


def test_an_open_registry_treats_every_caller_as_admin(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    server = RegistryServer(tmp_path_factory.mktemp("api-open") / "root")
    server.start()
    try:
        with server.client() as c:
            r = c.get("/api/v1/me")
        assert r.status_code == 200, r.text
        assert r.json()["admin"] is True and r.json()["via"] == "open"
    finally:
        server.stop()
