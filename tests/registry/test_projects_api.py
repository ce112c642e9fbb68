"""``/api/v1/projects`` against a real ``registry serve --tls``, on SQLite and PostgreSQL:
create, read, update and delete projects and members with basic credentials and with a
bearer token of ``/token``; who may do what; bad input as one-line JSON errors that change
nothing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.registry.projects_env import USERS, eventually, start_project_server
from tests.registry.server import Api, error_codes
from tests.registry.test_auth_server import AuthServer


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[AuthServer]:
    """A registry with users and no projects."""
    url = ""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres").create_database("projects_api")
    srv = start_project_server(tmp_path_factory.mktemp(f"projects-api-{request.param}"),
                               metadata_url=url)
    yield srv
    srv.stop()


def basic(server: AuthServer, user: str) -> httpx.Client:
    """A client sending ``user``'s password."""
    return server.client(auth=(user, USERS[user]))


def bearer(server: AuthServer, user: str) -> httpx.Client:
    """A client sending a token ``/token`` issued to ``user``."""
    return server.as_token(server.token(user, "repository:x/y:pull", password=USERS[user]))


def message(r: httpx.Response) -> str:
    """The first error message of a response."""
    return str(r.json()["errors"][0]["message"])


def test_crud_with_basic_credentials(server: AuthServer) -> None:
    with basic(server, "root") as root:
        r = root.post("/api/v1/projects", json={"name": "crud", "quota": "1MiB"})
        assert r.status_code == 201, r.text
        assert r.json()["name"] == "crud" and r.json()["quota"] == 1 << 20
        assert r.json()["public"] is False
        shown = root.get("/api/v1/projects/crud").json()
        assert shown["members"] == [{"project": "crud", "name": "root", "role": "admin"}]
        assert shown["usage"] == {"bytes": 0, "repositories": 0}
        r = root.post("/api/v1/projects/crud/members", json={"member": "dev",
                                                             "role": "developer"})
        assert r.status_code == 201, r.text
        r = root.post("/api/v1/projects/crud/members", json={"member": "dev",
                                                             "role": "maintainer"})
        assert r.status_code == 200 and r.json()["role"] == "maintainer"
        assert root.post("/api/v1/projects/crud/members",
                         json={"member": "@ci", "role": "guest"}).status_code == 201
        members = root.get("/api/v1/projects/crud/members").json()
        assert [(m["name"], m["role"]) for m in members] == [
            ("@ci", "guest"), ("dev", "maintainer"), ("root", "admin")]
        r = root.patch("/api/v1/projects/crud", json={"public": True, "quota": None})
        assert r.status_code == 200 and r.json()["public"] is True
        assert r.json()["quota"] is None
        assert "crud" in [p["name"] for p in root.get("/api/v1/projects").json()]
        assert root.delete("/api/v1/projects/crud/members/@ci").status_code == 204
        assert root.delete("/api/v1/projects/crud").status_code == 204
        assert root.get("/api/v1/projects/crud").status_code == 404


def test_crud_with_a_bearer_token(server: AuthServer) -> None:
    with bearer(server, "root") as root:
        assert root.post("/api/v1/projects", json={"name": "tok"}).status_code == 201
        assert root.post("/api/v1/projects/tok/members",
                         json={"member": "padmin", "role": "admin"}).status_code == 201
    with bearer(server, "padmin") as padmin:
        assert padmin.get("/api/v1/projects/tok").json()["name"] == "tok"
        assert padmin.post("/api/v1/projects/tok/members",
                           json={"member": "guest", "role": "guest"}).status_code == 201
        r = padmin.patch("/api/v1/projects/tok", json={"public": True})
        assert r.status_code == 200 and r.json()["public"] is True
        r = padmin.patch("/api/v1/projects/tok", json={"quota": "1GiB"})
        assert r.status_code == 403 and error_codes(r) == ["DENIED"]
        assert "only system admins" in message(r)
        assert padmin.delete("/api/v1/projects/tok").status_code == 204


def test_who_may_do_what(server: AuthServer) -> None:
    with basic(server, "root") as root:
        assert root.post("/api/v1/projects", json={"name": "priv"}).status_code == 201
        assert root.post("/api/v1/projects/priv/members",
                         json={"member": "guest", "role": "guest"}).status_code == 201
    with server.client() as anonymous:
        r = anonymous.post("/api/v1/projects", json={"name": "anon"})
        assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"]
        r = anonymous.get("/api/v1/projects/priv")
        assert r.status_code == 401
        assert "priv" not in [p["name"] for p in anonymous.get("/api/v1/projects").json()]
    with basic(server, "outsider") as outsider:
        r = outsider.post("/api/v1/projects", json={"name": "mine"})
        assert r.status_code == 403 and "only system admins" in message(r)
        r = outsider.get("/api/v1/projects/priv")
        assert r.status_code == 403 and "private" in message(r)
        assert "priv" not in [p["name"] for p in outsider.get("/api/v1/projects").json()]
    with basic(server, "guest") as guest:
        assert "priv" in [p["name"] for p in guest.get("/api/v1/projects").json()]
        assert guest.get("/api/v1/projects/priv/usage").json()["bytes"] == 0
        r = guest.post("/api/v1/projects/priv/members", json={"member": "dev",
                                                              "role": "admin"})
        assert r.status_code == 403
        assert message(r) == ("access denied: guest may not manage the members of project "
                              "priv: it needs role admin or higher and has role guest")
        assert guest.delete("/api/v1/projects/priv").status_code == 403
    with basic(server, "root") as root:
        assert [m["name"] for m in root.get("/api/v1/projects/priv/members").json()] == [
            "guest", "root"]


def test_bad_input_is_a_one_line_error_and_changes_nothing(server: AuthServer) -> None:
    with basic(server, "root") as root:
        assert root.post("/api/v1/projects", json={"name": "keep", "quota": 4096}
                         ).status_code == 201
        before = root.get("/api/v1/projects/keep").json()
        cases = [
            (root.post("/api/v1/projects", json={"name": "keep"}), 409, "CONFLICT",
             "project 'keep' exists already"),
            (root.post("/api/v1/projects", json={"name": "Bad_Name"}), 400, "INVALID",
             "project 'Bad_Name' is not a valid project name"),
            (root.post("/api/v1/projects", json={"name": "q", "quota": "12XB"}), 400,
             "INVALID", "quota '12XB' is not a size"),
            (root.post("/api/v1/projects", json={"quota": 1}), 400, "INVALID", "name: "),
            (root.patch("/api/v1/projects/keep", json={"quota": "lots"}), 400, "INVALID",
             "quota 'lots' is not a size"),
            (root.get("/api/v1/projects/nope"), 404, "NOT_FOUND",
             "project 'nope' does not exist"),
            (root.post("/api/v1/projects/nope/members", json={"member": "dev",
                                                              "role": "guest"}),
             404, "NOT_FOUND", "project 'nope' does not exist"),
            (root.post("/api/v1/projects/keep/members", json={"member": "dev",
                                                              "role": "owner"}),
             400, "INVALID", "'owner' is not a role"),
            (root.post("/api/v1/projects/keep/members", json={"member": "ghost",
                                                              "role": "guest"}),
             404, "NOT_FOUND", "user 'ghost' does not exist"),
            (root.delete("/api/v1/projects/keep/members/dev"), 404, "NOT_FOUND",
             "'dev' is not a member of project 'keep'"),
        ]
        for r, status, code, text in cases:
            assert r.status_code == status, r.text
            assert error_codes(r) == [code]
            assert text in message(r) and "\n" not in message(r), message(r)
        assert root.get("/api/v1/projects/keep").json() == before
        assert "q" not in [p["name"] for p in root.get("/api/v1/projects").json()]


def test_a_project_with_repositories_is_not_deleted(server: AuthServer) -> None:
    with basic(server, "root") as root:
        assert root.post("/api/v1/projects", json={"name": "full"}).status_code == 201
        assert root.post("/api/v1/projects/full/members",
                         json={"member": "dev", "role": "developer"}).status_code == 201

    def push() -> None:
        token = server.token("dev", "repository:full/app:pull,push", password=USERS["dev"])
        with server.as_token(token) as c:
            r = c.post("/v2/full/app/blobs/uploads/")
            assert r.status_code == 202, r.text
            Api(c).image("full/app", "1")

    eventually(push)
    with basic(server, "root") as root:
        r = root.delete("/api/v1/projects/full")
        assert r.status_code == 409 and error_codes(r) == ["CONFLICT"]
        assert message(r).startswith("project 'full' still has 1 repository")
        assert root.get("/api/v1/projects/full").json()["usage"]["repositories"] == 1
