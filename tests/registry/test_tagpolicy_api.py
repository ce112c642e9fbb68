"""The tag policy routes of the management API on a real ``registry serve --tls``: a system
admin adds, lists and removes immutability and retention rules and runs retention (a dry run
lists exactly what the run then removes); bad input is 400 naming the field, an unknown rule
404, as is a project that does not exist; a developer is refused (403 naming the role it
needs), a maintainer manages them; what the API adds the push path enforces."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.registry.server import error_codes
from tests.registry.test_auth_server import PASSWORDS, AuthServer, start_auth_server

ADMIN = ("root", PASSWORDS["root"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """A TLS registry with token auth, admin ``root`` and user ``alice``; projects
    ``team-a`` (alice a developer), ``team-b`` and ``team-c`` (alice a maintainer)."""
    srv = start_auth_server(tmp_path_factory.mktemp("api-tagpolicy"))
    with srv.client(auth=ADMIN) as c:
        for name, role in (("team-a", "developer"), ("team-b", None),
                           ("team-c", "maintainer")):
            made = c.post("/api/v1/projects", json={"name": name})
            assert made.status_code == 201, made.text
            if role:
                added = c.post(f"/api/v1/projects/{name}/members",
                               json={"member": "alice", "role": role})
                assert added.status_code in (200, 201), added.text
    yield srv
    srv.stop()


def test_immutability_rules_through_the_api(server: AuthServer) -> None:
    with server.client(auth=ADMIN) as c:
        added = c.post("/api/v1/projects/team-a/immutabletagrules",
                       json={"repositories": "**", "tags": "v*"})
        assert added.status_code == 201, added.text
        rule = added.json()
        assert rule["project"] == "team-a" and rule["tags"] == "v*"
        listed = c.get("/api/v1/projects/team-a/immutabletagrules").json()
        assert [r["id"] for r in listed] == [rule["id"]]
        bad = c.post("/api/v1/projects/team-a/immutabletagrules",
                     json={"repositories": "**", "tags": "v{"})
        assert bad.status_code == 400 and error_codes(bad) == ["INVALID"]
        assert bad.json()["errors"][0]["message"].startswith("tags: ")
        unknown = c.delete("/api/v1/projects/team-a/immutabletagrules/9999")
        assert unknown.status_code == 404 and "no immutability rule 9999" in unknown.text
        assert c.get("/api/v1/projects/team-a/immutabletagrules").json() == listed
        ghost = c.post("/api/v1/projects/ghost/immutabletagrules", json={"tags": "v*"})
        assert ghost.status_code == 404 and "project 'ghost' does not exist" in ghost.text
    with server.client(auth=("alice", PASSWORDS["alice"])) as c:
        refused = c.post("/api/v1/projects/team-a/immutabletagrules",
                         json={"repositories": "**", "tags": "x"})
        assert refused.status_code == 403 and error_codes(refused) == ["DENIED"]
        message = refused.json()["errors"][0]["message"]
        assert "needs role maintainer" in message and "has role developer" in message
        assert c.get("/api/v1/projects/team-a/immutabletagrules").json() == listed
        stranger = c.get("/api/v1/projects/team-b/immutabletagrules")
        assert stranger.status_code == 403  # not a member
        mine = c.post("/api/v1/projects/team-c/immutabletagrules", json={"tags": "rc-*"})
        assert mine.status_code == 201, mine.text  # a maintainer manages them
        assert c.delete(f"/api/v1/projects/team-c/immutabletagrules/{mine.json()['id']}"
                        ).status_code == 204
    with server.client(auth=ADMIN) as c:
        gone = c.delete(f"/api/v1/projects/team-a/immutabletagrules/{rule['id']}")
        assert gone.status_code == 204
        assert c.get("/api/v1/projects/team-a/immutabletagrules").json() == []


def _push(server: AuthServer, repo: str, tag: str, seed: str) -> str:
    """Push a tiny image as root; its manifest digest."""
    import hashlib

    token = server.token("root", f"repository:{repo}:pull,push")
    with server.as_token(token) as c:
        config = json.dumps({"seed": seed}).encode()
        layer = f"layer {seed}".encode() * 20
        for data in (config, layer):
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            r = c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
            assert r.status_code == 201, r.text
        doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                          "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                          "size": len(config)},
               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                           "digest": "sha256:" + hashlib.sha256(layer).hexdigest(),
                           "size": len(layer)}]}
        body = json.dumps(doc).encode()
        r = c.put(f"/v2/{repo}/manifests/{tag}", content=body,
                  headers={"Content-Type": doc["mediaType"]})
        return r.status_code if r.status_code != 201 else r.headers["docker-content-digest"]


def test_retention_rules_and_runs_through_the_api(server: AuthServer) -> None:
    digests = [_push(server, "team-b/app", f"b{i}", f"seed {i}") for i in range(3)]
    with server.client(auth=ADMIN) as c:
        for body, flag in (({"kind": "latest", "count": 0}, "count"),
                           ({"kind": "days", "count": -2}, "count"),
                           ({"kind": "sometimes"}, "kind"),
                           ({"kind": "always", "tags": "a b"}, "tags"),
                           ({"kind": "latest", "count": 1, "repositories": ""},
                            "repositories")):
            bad = c.post("/api/v1/projects/team-b/retentions", json=body)
            assert bad.status_code == 400, bad.text
            assert bad.json()["errors"][0]["message"].startswith(f"{flag}: ")
        assert c.get("/api/v1/projects/team-b/retentions").json() == []
        added = c.post("/api/v1/projects/team-b/retentions", json={"kind": "latest",
                                                                   "count": 1})
        assert added.status_code == 201, added.text
        dry = c.post("/api/v1/projects/team-b/retentions/executions",
                     params={"dry_run": "true"}).json()
        planned = sorted(r["digest"] for r in dry["planned"])
        assert planned == sorted(digests[:2]) and "removed" not in dry
        run = c.post("/api/v1/projects/team-b/retentions/executions").json()
        assert sorted(r["digest"] for r in run["removed"]) == planned
        assert run["skipped"] == []
        rule_id = added.json()["id"]
        assert c.delete(f"/api/v1/projects/team-b/retentions/{rule_id}").status_code == 204
    token = server.token("root", "repository:team-b/app:pull")
    with server.as_token(token) as c:
        assert c.get("/v2/team-b/app/tags/list").json()["tags"] == ["b2"]


def test_a_rule_added_by_the_api_is_enforced_on_push(server: AuthServer) -> None:
    first = _push(server, "team-c/app", "v1", "first")
    with server.client(auth=ADMIN) as c:
        assert c.post("/api/v1/projects/team-c/immutabletagrules",
                      json={"tags": "v*"}).status_code == 201
    assert _push(server, "team-c/app", "v1", "first") == first
    assert _push(server, "team-c/app", "v1", "second") == 403
