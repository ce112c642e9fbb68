"""Projects and roles against a real ``registry serve --tls`` with token auth, on SQLite and
on PostgreSQL: Harbor's roles (guest pulls, developer pushes, maintainer deletes), public
projects, the access rules combined by union, refusals that name the repository, the
action and why, and per-project quotas that refuse a push before it is kept."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.registry.projects_env import (
    USERS,
    eventually,
    registry_cmd,
    start_project_server,
)
from tests.registry.server import Api, error_codes, sha256
from tests.registry.test_auth_server import AuthServer

SMALL_QUOTA = 8192


def _setup(cmd) -> None:  # type: ignore[no-untyped-def]
    cmd("project", "create", "team")
    cmd("project", "create", "pub", "--public")
    cmd("project", "create", "small", "--quota", str(SMALL_QUOTA))
    for project in ("team", "pub", "small"):
        cmd("project", "member", "add", project, "dev", "--role", "developer")
    cmd("project", "member", "add", "team", "guest", "--role", "guest")
    cmd("project", "member", "add", "team", "maint", "--role", "maintainer")
    cmd("project", "member", "add", "team", "padmin", "--role", "admin")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[AuthServer]:
    """The registry with projects team (private), pub (public) and small (quota)."""
    url = ""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres").create_database("projects_http")
    srv = start_project_server(tmp_path_factory.mktemp(f"projects-{request.param}"),
                               metadata_url=url, setup=_setup)
    yield srv
    srv.stop()


def as_user(server: AuthServer, user: str | None, *scopes: str) -> httpx.Client:
    """A client with a token of ``user`` for ``scopes``."""
    auth = None if user is None else (user, USERS[user])
    with server.client() as c:
        r = c.get("/token", params={"service": "pybuild-registry", "scope": list(scopes)},
                  auth=auth)
    assert r.status_code == 200, r.text
    return server.as_token(r.json()["token"])


def granted(server: AuthServer, user: str | None, repo: str) -> list[str]:
    """The actions a token for ``user`` gets on ``repo`` when asking for all three."""
    auth = None if user is None else (user, USERS[user])
    with server.client() as c:
        r = c.get("/token", params={"service": "pybuild-registry",
                                    "scope": f"repository:{repo}:pull,push,delete"}, auth=auth)
    access = r.json()["scope"]
    return access.split(":")[-1].split(",") if access else []


def test_roles_decide_what_a_token_grants(server: AuthServer) -> None:
    assert "3 projects: their members' roles add to the rules" in server.proc.log()
    assert granted(server, "guest", "team/app") == ["pull"]
    assert granted(server, "dev", "team/app") == ["pull", "push"]
    assert granted(server, "maint", "team/app") == ["pull", "push", "delete"]
    assert granted(server, "padmin", "team/app") == ["pull", "push", "delete"]
    assert granted(server, "root", "team/app") == ["pull", "push", "delete"]
    assert granted(server, "outsider", "team/app") == []
    assert granted(server, None, "team/app") == []
    assert granted(server, None, "pub/app") == ["pull"]
    assert granted(server, "outsider", "pub/app") == ["pull"]
    # The access rules add to the roles (union): carol has a rule on team/legacy only.
    assert granted(server, "carol", "team/legacy") == ["pull", "push"]
    assert granted(server, "carol", "team/app") == []
    # A repository of no project: the rules alone (explicit policy: nothing for dev).
    assert granted(server, "dev", "elsewhere/app") == []


def test_a_developer_pushes_and_a_guest_is_refused_and_told_why(server: AuthServer) -> None:
    with as_user(server, "dev", "repository:team/app:pull,push") as c:
        pushed = Api(c).image("team/app", "1")
    with as_user(server, "guest", "repository:team/app:pull,push") as c:
        assert c.get("/v2/team/app/manifests/1").status_code == 200
        refused = c.post("/v2/team/app/blobs/uploads/")
        assert refused.status_code == 403 and error_codes(refused) == ["DENIED"]
        error = refused.json()["errors"][0]
        assert error["message"] == ("access denied: no rule or project role grants push on "
                                    "team/app: user guest has role guest in project team, "
                                    "which allows pull")
        assert error["detail"] == [{"Type": "repository", "Name": "team/app",
                                    "Action": "push", "Reason": error["message"][15:]}]
        assert c.put("/v2/team/app/manifests/2", content=pushed.body,
                     headers={"Content-Type": pushed.media_type}).status_code == 403
    with as_user(server, "outsider", "repository:team/app:pull") as c:
        r = c.get("/v2/team/app/manifests/1")
        assert r.status_code == 403
        assert "user outsider is not a member of project team" in r.text
    with as_user(server, None, "repository:team/app:pull") as c:
        r = c.get("/v2/team/app/manifests/1")
        assert r.status_code == 401 and error_codes(r) == ["DENIED"]
        assert "project team is private; log in" in r.json()["errors"][0]["message"]


def test_a_public_project_allows_anonymous_pull(server: AuthServer) -> None:
    with as_user(server, "dev", "repository:pub/app:pull,push") as c:
        Api(c).image("pub/app", "1")
    with as_user(server, None, "repository:pub/app:pull") as c:
        assert c.get("/v2/pub/app/manifests/1").status_code == 200
    with as_user(server, None, "repository:pub/app:pull,push") as c:
        r = c.post("/v2/pub/app/blobs/uploads/")
        assert r.status_code == 401 and "anonymous clients may pull only" in r.text
    with as_user(server, None, "registry:catalog:*") as c:
        repositories = c.get("/v2/_catalog").json()["repositories"]
    assert "pub/app" in repositories and "team/app" not in repositories


def test_a_maintainer_deletes_a_developer_may_not(server: AuthServer) -> None:
    with as_user(server, "dev", "repository:team/del:pull,push,delete") as c:
        pushed = Api(c).image("team/del", "1")
        r = c.delete(f"/v2/team/del/manifests/{pushed.digest}")
        assert r.status_code == 403 and "user dev has role developer" in r.text
    with as_user(server, "maint", "repository:team/del:pull,push,delete") as c:
        assert c.delete(f"/v2/team/del/manifests/{pushed.digest}").status_code == 202
        assert c.get(f"/v2/team/del/manifests/{pushed.digest}").status_code == 404


def test_the_rules_still_grant_inside_a_project(server: AuthServer) -> None:
    with as_user(server, "carol", "repository:team/legacy:pull,push") as c:
        Api(c).image("team/legacy", "1")
        assert c.get("/v2/team/legacy/manifests/1").status_code == 200


def _usage(server: AuthServer, project: str) -> dict[str, int]:
    with server.client(auth=("root", USERS["root"])) as c:
        r = c.get(f"/api/v1/projects/{project}/usage")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_a_push_over_the_quota_is_refused_with_nothing_stored(server: AuthServer) -> None:
    fits = b"f" * 3000
    too_big = b"x" * (SMALL_QUOTA + 1)
    with as_user(server, "dev", "repository:small/a:pull,push",
                 "repository:small/b:pull,push") as c:
        api = Api(c)
        api.blob("small/a", fits)
        before = _usage(server, "small")
        assert before["bytes"] == len(fits)
        # Announced by Content-Length: refused before a byte is read.
        r = c.post("/v2/small/a/blobs/uploads/", params={"digest": sha256(too_big)},
                   content=too_big)
        assert r.status_code == 413 and error_codes(r) == ["SIZE_INVALID"]
        message = r.json()["errors"][0]["message"]
        assert message.startswith("quota exceeded: project small has a quota of 8.0 KiB "
                                  "and uses 2.9 KiB"), message
        assert r.json()["errors"][0]["detail"]["quota"] == SMALL_QUOTA
        # Streamed without a length: refused when it would be committed.
        session = c.post("/v2/small/a/blobs/uploads/")
        assert session.status_code == 202
        location = session.headers["location"]
        chunked = c.patch(location, content=iter([too_big[:5000], too_big[5000:]]))
        assert chunked.status_code == 202, chunked.text
        done = c.put(chunked.headers["location"], params={"digest": sha256(too_big)})
        assert done.status_code == 403 and error_codes(done) == ["DENIED"]
        detail = done.json()["errors"][0]
        assert "quota exceeded: project small" in detail["message"]
        assert detail["detail"]["usage"] == len(fits)
        assert detail["detail"]["adding"] == len(too_big)
        assert c.head(f"/v2/small/a/blobs/{sha256(too_big)}").status_code == 404
        assert c.get(chunked.headers["location"]).status_code == 404
        assert _usage(server, "small") == before
        # A blob the project holds already counts once, in any of its repositories.
        api.blob("small/b", fits)
        assert _usage(server, "small")["bytes"] == len(fits)
        # A manifest that does not fit is refused as well.
        config = b"c" * 5000
        r = c.post("/v2/small/b/blobs/uploads/", params={"digest": sha256(config)},
                   content=config)
        assert r.status_code == 201
        assert _usage(server, "small")["bytes"] == len(fits) + len(config)
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": sha256(config), "size": len(config)},
                    "layers": [], "annotations": {"pad": "p" * 1000}}
        r = api.manifest("small/b", "1", manifest)
        assert r.status_code == 403 and "quota exceeded" in r.text
        assert c.get("/v2/small/b/manifests/1").status_code == 404


def test_project_show_prints_the_usage(server: AuthServer) -> None:
    config = server.root.parent / "config.toml"
    shown = registry_cmd(server.root, "project", "show", "small", "--json",
                         env=server.proc.env, config=config)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["quota"] == SMALL_QUOTA and doc["usage"]["bytes"] > 0
    assert {"project": "small", "name": "dev", "role": "developer"} in doc["members"]
    text = registry_cmd(server.root, "project", "show", "small", env=server.proc.env,
                        config=config)
    assert "quota: 8.0 KiB" in text.stdout and "usage: " in text.stdout, text.stdout


def test_a_role_given_through_the_api_takes_effect(server: AuthServer) -> None:
    with server.client(auth=("padmin", USERS["padmin"])) as c:
        r = c.post("/api/v1/projects/team/members", json={"member": "outsider",
                                                          "role": "guest"})
        assert r.status_code == 201, r.text
    try:
        eventually(lambda: _expect(granted(server, "outsider", "team/app"), ["pull"]))
    finally:
        with server.client(auth=("padmin", USERS["padmin"])) as c:
            assert c.delete("/api/v1/projects/team/members/outsider").status_code == 204
    eventually(lambda: _expect(granted(server, "outsider", "team/app"), []))


def _expect(got: object, want: object) -> None:
    assert got == want



def test_a_mount_over_the_quota_is_refused_and_undone(server: AuthServer) -> None:
    big = b"m" * (SMALL_QUOTA * 2)
    with as_user(server, "dev", "repository:team/src:pull,push",
                 "repository:small/m:pull,push") as c:
        Api(c).blob("team/src", big)
        before = _usage(server, "small")
        r = c.post("/v2/small/m/blobs/uploads/", params={"mount": sha256(big),
                                                         "from": "team/src"})
        assert r.status_code == 403 and error_codes(r) == ["DENIED"]
        assert f"mounting {sha256(big)} of 16.0 KiB" in message_of(r)
        assert c.head(f"/v2/small/m/blobs/{sha256(big)}").status_code == 404
        assert _usage(server, "small") == before


def message_of(r: httpx.Response) -> str:
    """The first error message of a response."""
    return str(r.json()["errors"][0]["message"])


def test_a_full_project_refuses_new_uploads_at_once_but_shares_what_it_holds(
        server: AuthServer) -> None:
    with server.client(auth=("root", USERS["root"])) as c:
        assert c.post("/api/v1/projects", json={"name": "brim", "quota": 4096}
                      ).status_code == 201
        assert c.post("/api/v1/projects/brim/members", json={"member": "dev",
                                                             "role": "developer"}
                      ).status_code == 201
    exact = b"e" * 4096

    def fill() -> None:
        with as_user(server, "dev", "repository:brim/a:pull,push") as c:
            Api(c).blob("brim/a", exact)

    eventually(fill)

    def full_but_shared() -> None:
        with as_user(server, "dev", "repository:brim/a:pull,push",
                     "repository:brim/b:pull,push") as c:
            r = c.post("/v2/brim/b/blobs/uploads/")
            assert r.status_code == 403 and error_codes(r) == ["DENIED"]
            assert message_of(r) == ("quota exceeded: project brim has a quota of 4.0 KiB "
                                     "and uses 4.0 KiB: it is full, no new upload is taken")
            r = c.post("/v2/brim/b/blobs/uploads/", params={"mount": sha256(exact),
                                                            "from": "brim/a"})
            assert r.status_code == 201, r.text

    # The server workers that issue the token and answer the upload may be others than the
    # one that took the fill: they learn of the new project (and its quota) within a second.
    eventually(full_but_shared)
    assert _usage(server, "brim")["bytes"] == len(exact)
