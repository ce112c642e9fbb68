"""Configuration changes in the audit log, against a real ``registry serve --tls`` with token
auth, on SQLite and on PostgreSQL: project create/update/delete, member add/remove,
immutability and retention rules added and removed, retention runs (each manifest removed
and a summary) and user add/del. Made with the ``registry`` command they name the
operating-system user at address ``local``; made through the management API, the caller and
its client address. ``registry audit --json`` lists them with the project and a detail."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from registry.audit.events import local_actor
from tests.registry.server import Api
from tests.registry.test_audit_webhooks import USERS, Setup, start, until
from tests.registry.test_auth_policy import registry_cli

CHANGES = ("project.", "member.", "immutable.", "retention.", "user.", "robot.")


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str:
    """Empty (SQLite under the root), or the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return ""
    engine = request.getfixturevalue("postgres")
    return str(engine.create_database(f"changes_{uuid.uuid4().hex[:10]}"))


def changes(setup: Setup, expected: int, **select: str) -> list[dict[str, Any]]:
    """The configuration changes ``registry audit --json`` lists (with ``--project`` and
    the like from ``select``), oldest first, once there are ``expected`` of them."""
    flags = [part for key, value in select.items() for part in (f"--{key}", value)]

    def listed() -> list[dict[str, Any]] | None:
        events = setup.cli("audit", "--json", "--limit", "1000", *flags)
        found = [e for e in events if e["action"].startswith(CHANGES)]
        return found[::-1] if len(found) >= expected else None

    found: list[dict[str, Any]] = until(listed, f"{expected} configuration changes")
    return found


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """(action, user, address, project, detail) of each event."""
    return [(e["action"], e["user"], e["address"], e["project"], e["detail"]) for e in events]


def test_changes_made_with_the_cli_are_audited_as_the_local_user(
        tmp_path: Path, database: str) -> None:
    user, local = local_actor()
    (setup,) = start(tmp_path, database)
    try:
        with setup.client("ci", "127.0.0.31", "repository:team/app:pull,push") as c:
            old = Api(c).image("team/app", "1")
            Api(c).image("team/app", "2")
        setup.cli("project", "update", "team", "--public", "--quota", "2048")
        setup.cli("project", "member", "add", "team", "ci", "--role", "developer")
        setup.cli("project", "member", "add", "team", "ci", "--role", "maintainer")
        setup.cli("immutable", "add", "team", "--repos", "app", "--tags", "v*")
        setup.cli("retention", "add", "team", "--keep-tags", "2")
        dry = setup.cli("retention", "run", "--project", "team", "--dry-run").stdout
        assert f"would remove team/app@{old.digest}" in dry
        ran = setup.cli("retention", "run", "--project", "team").stdout
        assert f"removed team/app@{old.digest}" in ran
        setup.cli("immutable", "remove", "team", "1")
        setup.cli("retention", "remove", "team", "1")
        setup.cli("project", "member", "remove", "team", "ci")
        setup.cli("project", "delete", "other")
        setup.cli("user", "add", "tmp", "--password-stdin", "--group", "qa", stdin="tmp-pw\n")
        setup.cli("user", "del", "tmp")

        events = changes(setup, 18)
        assert {(e["user"], e["address"]) for e in events} == {(user, local)}
        assert summary(events) == [
            ("user.add", user, local, "", "user=ci groups=-"),
            ("user.add", user, local, "", "user=ops groups=-"),
            ("project.create", user, local, "team", "visibility=private quota=unlimited"),
            ("project.create", user, local, "other", "visibility=private quota=unlimited"),
            ("project.create", user, local, "small", "visibility=private quota=1024"),
            ("project.update", user, local, "team",
             "visibility=public (was private) quota=2048 (was unlimited)"),
            ("member.add", user, local, "team", "member=ci role=developer"),
            ("member.add", user, local, "team", "member=ci role=maintainer (was developer)"),
            ("immutable.add", user, local, "team", "rule=1 repositories=app tags=v*"),
            ("retention.add", user, local, "team",
             "rule=1 repositories=** tags=2 keep=always"),
            ("retention.delete", user, local, "team", "tags=1 (kept by no retention rule)"),
            ("retention.run", user, local, "team",
             "removed=1 skipped=0 kept=1 repositories=1"),
            ("immutable.remove", user, local, "team", "rule=1 repositories=app tags=v*"),
            ("retention.remove", user, local, "team",
             "rule=1 repositories=** tags=2 keep=always"),
            ("member.remove", user, local, "team", "member=ci role=maintainer"),
            ("project.delete", user, local, "other", "visibility=private quota=unlimited"),
            ("user.add", user, local, "", "user=tmp groups=qa"),
            ("user.remove", user, local, "", "user=tmp"),
        ]
        (removal,) = [e for e in events if e["action"] == "retention.delete"]
        assert (removal["repository"], removal["digest"], removal["reference"]) == (
            "team/app", old.digest, old.digest)
        team = changes(setup, 11, project="team")
        assert {e["project"] for e in team} == {"team"} and len(team) == 11
        lines = setup.cli("audit", "--project", "team").stdout.splitlines()
        assert any(f"\tretention.delete\t{user}\tlocal\tteam/app@{old.digest}\t" in line
                   for line in lines), lines
        assert any(line.endswith(f"\tmember.remove\t{user}\tlocal\tteam\t"
                                 "member=ci role=maintainer") for line in lines), lines
    finally:
        setup.server.stop()


def test_changes_made_through_the_api_name_the_caller_and_its_address(
        tmp_path: Path, database: str) -> None:
    (setup,) = start(tmp_path, database)
    srv = setup.server
    try:
        with srv.client(auth=("ops", USERS["ops"]), local_address="127.0.0.41") as ops:
            def ok(r: Any, status: int) -> Any:
                assert r.status_code == status, r.text
                return r.json() if r.content else None

            ok(ops.post("/api/v1/projects", json={"name": "apiproj", "quota": "1MiB"}), 201)
            ok(ops.patch("/api/v1/projects/apiproj", json={"public": True}), 200)
            ok(ops.post("/api/v1/projects/apiproj/members",
                        json={"member": "ci", "role": "developer"}), 201)
            ok(ops.post("/api/v1/projects/apiproj/members",
                        json={"member": "@qa", "role": "guest"}), 201)
            immutable = ok(ops.post("/api/v1/projects/apiproj/immutabletagrules",
                                    json={"tags": "v*"}), 201)
            kept = ok(ops.post("/api/v1/projects/apiproj/retentions",
                               json={"kind": "always", "tags": "2"}), 201)
            ok(ops.post("/api/v1/projects", json={"name": "apidel"}), 201)
            ok(ops.delete("/api/v1/projects/apidel"), 204)
        with setup.client("ci", "127.0.0.42", "repository:apiproj/app:pull,push") as c:
            old = Api(c).image("apiproj/app", "1")
            Api(c).image("apiproj/app", "2")
        with srv.client(auth=("ops", USERS["ops"]), local_address="127.0.0.41") as ops:
            dry = ok(ops.post("/api/v1/projects/apiproj/retentions/executions",
                              params={"dry_run": "true"}), 200)
            assert [r["digest"] for r in dry["planned"]] == [old.digest]
            ran = ok(ops.post("/api/v1/projects/apiproj/retentions/executions"), 200)
            assert [r["digest"] for r in ran["removed"]] == [old.digest]
            ok(ops.delete(f"/api/v1/projects/apiproj/immutabletagrules/{immutable['id']}"),
               204)
            ok(ops.delete(f"/api/v1/projects/apiproj/retentions/{kept['id']}"), 204)
            ok(ops.delete("/api/v1/projects/apiproj/members/@qa"), 204)
        setup.cli("project", "member", "add", "apiproj", "ci", "--role", "admin")
        with srv.client(auth=("ci", USERS["ci"]), local_address="127.0.0.43") as ci:
            ok(ci.post("/api/v1/projects/apiproj/members",
                       json={"member": "ops", "role": "maintainer"}), 200)
            refused = ci.post("/api/v1/projects", json={"name": "nope"})
            assert refused.status_code == 403, refused.text

        events = changes(setup, 13, project="apiproj")
        ops_at, ci_at = ("ops", "127.0.0.41"), ("ci", "127.0.0.43")
        operator = local_actor()
        assert {e["project"] for e in events} == {"apiproj"}
        assert [(e["action"], (e["user"], e["address"]), e["detail"]) for e in events] == [
            ("project.create", ops_at, "visibility=private quota=1048576 admin=ops"),
            ("project.update", ops_at, "visibility=public (was private)"),
            ("member.add", ops_at, "member=ci role=developer"),
            ("member.add", ops_at, "member=@qa role=guest"),
            ("immutable.add", ops_at, f"rule={immutable['id']} repositories=** tags=v*"),
            ("retention.add", ops_at,
             f"rule={kept['id']} repositories=** tags=2 keep=always"),
            ("retention.delete", ops_at, "tags=1 (kept by no retention rule)"),
            ("retention.run", ops_at, "removed=1 skipped=0 kept=1 repositories=1"),
            ("immutable.remove", ops_at, f"rule={immutable['id']} repositories=** tags=v*"),
            ("retention.remove", ops_at,
             f"rule={kept['id']} repositories=** tags=2 keep=always"),
            ("member.remove", ops_at, "member=@qa role=guest"),
            ("member.add", operator, "member=ci role=admin (was developer)"),
            ("member.add", ci_at, "member=ops role=maintainer (was admin)"),
        ]
        (removal,) = [e for e in events if e["action"] == "retention.delete"]
        assert (removal["repository"], removal["digest"]) == ("apiproj/app", old.digest)
        deleted = changes(setup, 2, project="apidel")
        assert summary(deleted) == [
            ("project.create", "ops", "127.0.0.41", "apidel",
             "visibility=private quota=unlimited admin=ops"),
            ("project.delete", "ops", "127.0.0.41", "apidel",
             "visibility=private quota=unlimited"),
        ]
        assert [e["action"] for e in changes(setup, 1, user="ci")] == ["member.add"]
        with srv.client(auth=("ops", USERS["ops"])) as ops:
            listed = ops.get("/api/v1/audit", params={"project": "apiproj", "limit": 100})
            assert listed.status_code == 200, listed.text
            assert [e["action"] for e in listed.json()
                    if e["action"].startswith(CHANGES)][::-1] == [e["action"] for e in events]
    finally:
        srv.stop()


def test_a_change_whose_audit_event_cannot_be_written_says_so_in_a_line(
        tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "audit.db").mkdir(parents=True)
    done = registry_cli("project", "create", "team", "--root", str(root))
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("registry project: project.create: done, but the audit log "
                           "cannot be written: "), line
    assert "audit.db" in line
    listed = registry_cli("project", "list", "--root", str(root))
    assert listed.stdout.split() == ["team", "private", "unlimited"]
    done = registry_cli("immutable", "add", "team", "--tags", "v*", "--root", str(root))
    assert done.returncode == 1
    assert done.stderr.startswith("registry immutable add: immutable.add: done, but the "
                                  "audit log cannot be written: "), done.stderr


def test_robot_and_cli_secret_changes_are_audited(tmp_path: Path, database: str) -> None:
    user, local = local_actor()
    (setup,) = start(tmp_path, database)
    try:
        before = len(changes(setup, 0))
        made = setup.cli("robot", "create", "builder", "--project", "team", "--actions",
                         "pull,push", "--expires", "7", "--json")
        name = made["name"]
        setup.cli("robot", "disable", name)
        setup.cli("robot", "enable", name)
        setup.cli("robot", "rotate", name, "--json")
        setup.cli("robot", "delete", name)
        setup.cli("user", "secret", "create", "ci", "--name", "laptop", "--json")
        setup.cli("user", "secret", "revoke", "ci", "--name", "laptop")
        events = changes(setup, before + 7)[before:]
        assert [(e["action"], e["user"], e["address"], e["project"]) for e in events] == [
            ("robot.create", user, local, "team"),
            ("robot.disable", user, local, "team"),
            ("robot.enable", user, local, "team"),
            ("robot.rotate", user, local, "team"),
            ("robot.delete", user, local, "team"),
            ("user.secret.create", user, local, ""),
            ("user.secret.revoke", user, local, ""),
        ]
        assert events[0]["detail"].startswith(f"robot={name} actions=pull,push expires=")
        assert all(f"robot={name}" == e["detail"] for e in events[1:5])
        assert events[5]["detail"] == "user=ci label=laptop"
    finally:
        setup.server.stop()
