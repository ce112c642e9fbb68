"""The audit log and webhooks against a real ``registry serve --tls`` with token auth, on
SQLite and on PostgreSQL: pushes, pulls and deletes are logged with the user and the client
address; webhooks of the project get Harbor-shaped, signed deliveries, a failing receiver
is retried and the delivery log shows the attempts; a quota-exceeded event reaches the
webhooks through :func:`registry.webhooks.quota_exceeded`; several replicas send a delivery
once; a clean restart loses neither audit events nor pending deliveries."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from registry.config import Settings
from registry.testing.processes import ours
from registry.webhooks import quota_exceeded
from tests.registry.receiver import Receiver
from tests.registry.server import Api, sha256
from tests.registry.test_auth_policy import registry_cli
from tests.registry.test_auth_server import AuthServer

USERS = {"ci": "ci-pw", "ops": "ops-pw"}
SECRET = "s3cret-for-hooks"
CONFIG = """
admins = ["ops"]
webhook_retry_seconds = 1

[[access]]
repository = "team/**"
users = ["ci"]
actions = ["pull", "push"]

[[access]]
repository = "small/**"
users = ["ci"]
actions = ["pull", "push"]
"""
PROJECTS = (("team",), ("other",), ("small", "--quota", "1024"))


@dataclass
class Setup:
    """A registry, its config file and how to run ``registry`` commands against it."""

    server: AuthServer
    config: Path
    metadata_url: str

    def cli(self, *args: str, stdin: str = "", ok: bool = True) -> Any:
        """Run ``registry ARGS --root … --config …``; the parsed JSON output if it is JSON."""
        done = registry_cli(*args, "--root", str(self.server.root), "--config",
                            str(self.config), stdin=stdin)
        if ok:
            assert done.returncode == 0, done.stderr
        try:
            return json.loads(done.stdout)
        except ValueError:
            return done

    def settings(self) -> Settings:
        """The settings of the server, for calls into the service layer."""
        return Settings(root=self.server.root, metadata_url=self.metadata_url)

    def client(self, user: str, address: str, scope: str) -> Any:
        """An HTTPS client from ``address`` with a token of ``user`` for ``scope``."""
        token = self.server.token(user, scope, password=USERS[user])
        return self.server.client(local_address=address,
                                  headers={"Authorization": f"Bearer {token}"})


def start(tmp: Path, metadata_url: str = "", *, config: str = CONFIG, replicas: int = 1,
          workers: int = 1) -> list[Setup]:
    """``registry serve --tls`` (``replicas`` of them on one database) with users ci, ops."""
    root = tmp / "root"
    config_file = tmp / "config.toml"
    extra = f'metadata_url = "{metadata_url}"\n' if metadata_url else ""
    config_file.write_text(extra + config)
    for user, password in USERS.items():
        done = registry_cli("user", "add", user, "--password-stdin", "--root", str(root),
                            "--config", str(config_file), stdin=f"{password}\n")
        assert done.returncode == 0, done.stderr
    for project in PROJECTS:
        done = registry_cli("project", "create", *project, "--root", str(root), "--config",
                            str(config_file))
        assert done.returncode == 0, done.stderr
    setups = []
    for i in range(replicas):
        replica_root = root if i == 0 else tmp / f"root{i}"
        if i:
            (replica_root / "tls").mkdir(parents=True)
            for name in ("ca.crt", "ca.key"):
                (replica_root / "tls" / name).write_bytes((root / "tls" / name).read_bytes())
        proc = ours(replica_root, tls=True, workers=workers,
                    extra=["--config", str(config_file)]).start()
        setups.append(Setup(AuthServer(proc, replica_root), config_file, metadata_url))
    return setups


@pytest.fixture(params=["sqlite", "postgres"])
def metadata_url(request: pytest.FixtureRequest) -> str:
    """Empty (SQLite under the root), or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return ""
    engine = request.getfixturevalue("postgres")
    return str(engine.create_database(f"audit_{uuid.uuid4().hex[:10]}"))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver whose ``/flaky`` answers 500 once, then 200."""
    recv = Receiver({"/flaky": [500]}).start()
    yield recv
    recv.stop()


def until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.3)


def test_push_pull_delete_are_audited_and_sent_to_webhooks(
        tmp_path: Path, metadata_url: str, receiver: Receiver) -> None:
    (setup,) = start(tmp_path, metadata_url)
    try:
        setup.cli("webhook", "add", "team", "--url", receiver.url("/hook"), "--name", "recv",
                  "--secret-stdin", stdin=f"{SECRET}\n")
        setup.cli("webhook", "add", "team", "--url", receiver.url("/flaky"), "--name",
                  "flaky", "--events", "push")
        setup.cli("webhook", "add", "other", "--url", receiver.url("/other"))
        hooks = setup.cli("webhook", "list", "team", "--json")
        assert [(h["name"], h["signed"]) for h in hooks] == [("flaky", False), ("recv", True)]

        with setup.client("ci", "127.0.0.7", "repository:team/app:pull,push") as c:
            pushed = Api(c).image("team/app", "1")
            assert c.head("/v2/team/app/manifests/1").status_code == 200
            r = c.get("/v2/team/app/manifests/1", headers={"Accept": pushed.media_type})
            assert r.status_code == 200
        with setup.client("ops", "127.0.0.8", "repository:team/app:delete") as c:
            assert c.delete("/v2/team/app/manifests/1").status_code == 202

        push, delete = receiver.wait("/hook", 2)
        assert push.headers["content-type"] == "application/json"
        assert push.headers["x-pybuild-event"] == "PUSH_ARTIFACT"
        assert push.signed_with(SECRET) and delete.signed_with(SECRET)
        assert not push.signed_with("another secret")
        address = setup.server.address
        assert push.doc["type"] == "PUSH_ARTIFACT" and push.doc["operator"] == "ci"
        assert abs(push.doc["occur_at"] - time.time()) < 600
        assert push.doc["event_data"]["resources"] == [
            {"digest": pushed.digest, "tag": "1", "resource_url": f"{address}/team/app:1"}]
        repository = push.doc["event_data"]["repository"]
        assert (repository["name"], repository["namespace"], repository["repo_full_name"],
                repository["repo_type"]) == ("app", "team", "team/app", "private")
        assert delete.doc["type"] == "DELETE_ARTIFACT" and delete.doc["operator"] == "ops"
        assert delete.doc["event_data"]["resources"][0]["digest"] == pushed.digest
        assert delete.doc["event_data"]["resources"][0]["tag"] == "1"

        first, second = receiver.wait("/flaky", 2)
        assert first.body == second.body and "x-pybuild-signature" not in first.headers
        assert first.headers["x-pybuild-delivery"] == second.headers["x-pybuild-delivery"]

        quota_exceeded(setup.settings(), "team/app", subject="ci", address="127.0.0.7",
                       reference="2", details="quota 1 MiB of project team, usage 2 MiB")
        quota = receiver.wait("/hook", 3)[2]
        assert quota.doc["type"] == "QUOTA_EXCEED" and quota.signed_with(SECRET)
        assert quota.doc["event_data"]["custom_attributes"]["details"].startswith("quota 1")
        assert receiver.at("/other") == []

        def settled() -> list[dict[str, Any]] | None:
            rows = setup.cli("webhook", "deliveries", "team", "--json")
            return rows if len(rows) == 4 and all(r["state"] == "delivered"
                                                  for r in rows) else None

        rows = until(settled, "four delivered deliveries")
        flaky = [r for r in rows if r["webhook"] == "flaky"]
        assert [(r["event"], r["attempts"], r["response_code"]) for r in flaky] == [
            ("PUSH_ARTIFACT", 2, 200)]
        recv = sorted((r["event"], r["attempts"], r["response_code"])
                      for r in rows if r["webhook"] == "recv")
        assert recv == [("DELETE_ARTIFACT", 1, 200), ("PUSH_ARTIFACT", 1, 200),
                        ("QUOTA_EXCEED", 1, 200)]
        text = setup.cli("webhook", "deliveries", "team", "--name", "flaky").stdout
        assert "\tdelivered\t2\t200\t" in text

        def logged() -> list[dict[str, Any]] | None:
            events = setup.cli("audit", "--project", "team", "--json")
            actions = [e["action"] for e in events]
            return events if {"push", "pull", "delete", "quota_exceeded"} <= set(actions) \
                else None

        events = until(logged, "the audit events")
        by_action: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            by_action.setdefault(event["action"], []).append(event)
        manifest_push = [e for e in by_action["push"] if e["reference"] == "1"]
        assert [(e["user"], e["address"], e["repository"], e["digest"])
                for e in manifest_push] == [("ci", "127.0.0.7", "team/app", pushed.digest)]
        assert [(e["user"], e["address"], e["reference"], e["digest"])
                for e in by_action["pull"]] == [("ci", "127.0.0.7", "1", pushed.digest)]
        assert [(e["user"], e["address"], e["reference"], e["digest"])
                for e in by_action["delete"]] == [("ops", "127.0.0.8", "1", pushed.digest)]
        assert len(by_action["webhook.add"]) == 2
        assert by_action["webhook.add"][0]["address"] == "local"
        ops_only = setup.cli("audit", "--user", "ops", "--json")
        assert [e["action"] for e in ops_only] == ["delete"]
        assert setup.cli("audit", "--since", "2999-01-01", "--json") == []
        assert len(setup.cli("audit", "--since", "1h", "--json", "--limit", "2")) == 2
        lines = setup.cli("audit", "--project", "team").stdout.splitlines()
        assert any("\tpull\tci\t127.0.0.7\tteam/app:1\t" in line for line in lines), lines
    finally:
        setup.server.stop()


def test_replicas_send_a_delivery_once(tmp_path: Path, postgres: Any,
                                       receiver: Receiver) -> None:
    url = postgres.create_database(f"audit_replicas_{uuid.uuid4().hex[:8]}")
    setups = start(tmp_path, url, replicas=2, workers=2)
    try:
        setups[0].cli("webhook", "add", "team", "--url", receiver.url("/once"))
        with setups[1].client("ci", "127.0.0.9", "repository:team/app:pull,push") as c:
            for tag in ("1", "2", "3"):
                Api(c).image("team/app", tag)
        receiver.wait("/once", 3)
        until(lambda: all(r["state"] == "delivered" for r in
                          setups[0].cli("webhook", "deliveries", "team", "--json")),
              "the deliveries to be recorded")
        time.sleep(2)
        tags = sorted(r.doc["event_data"]["resources"][0]["tag"]
                      for r in receiver.at("/once"))
        assert tags == ["1", "2", "3"]
        events = setups[0].cli("audit", "--project", "team", "--json")
        assert sorted(e["reference"] for e in events if e["action"] == "push"
                      and not e["reference"].startswith("sha")) == ["1", "2", "3"]
    finally:
        for setup in setups:
            setup.server.stop()


def test_a_clean_restart_keeps_audit_events_and_retries_pending_deliveries(
        tmp_path: Path) -> None:
    recv = Receiver({"/slow": [503]}).start()
    config = CONFIG.replace("webhook_retry_seconds = 1", "webhook_retry_seconds = 4")
    (setup,) = start(tmp_path, config=config)
    try:
        setup.cli("webhook", "add", "team", "--url", recv.url("/slow"))
        with setup.client("ci", "127.0.0.10", "repository:team/app:pull,push") as c:
            pushed = Api(c).image("team/app", "1")
        recv.wait("/slow", 1)
        setup.server.stop()
        stored = setup.cli("audit", "--json")
        assert [e["digest"] for e in stored if e["action"] == "push"
                and e["reference"] == "1"] == [pushed.digest]
        (pending,) = setup.cli("webhook", "deliveries", "team", "--json")
        assert (pending["state"], pending["attempts"], pending["response_code"]) == (
            "pending", 1, 503)
        assert pending["last_error"].startswith("HTTP 503")
        setup.server.proc.start()
        recv.wait("/slow", 2)
        until(lambda: setup.cli("webhook", "deliveries", "team", "--json")[0]["state"]
              == "delivered", "the retried delivery")
    finally:
        setup.server.stop()
        recv.stop()


def test_bad_webhook_and_audit_arguments_are_one_line_errors(tmp_path: Path) -> None:
    root = tmp_path / "root"

    def refused(*args: str, stdin: str = "") -> str:
        done = registry_cli(*args, "--root", str(root), stdin=stdin)
        assert done.returncode == 2, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        return lines[0]

    assert "--url 'not a url'" in refused("webhook", "add", "team", "--url", "not a url")
    assert "--url 'ftp://h/x'" in refused("webhook", "add", "team", "--url", "ftp://h/x")
    assert "--url 'http://h:99999/'" in refused("webhook", "add", "team", "--url",
                                                "http://h:99999/")
    assert "--events: unknown event 'pull'" in refused(
        "webhook", "add", "team", "--url", "http://127.0.0.1/x", "--events", "push,pull")
    assert "--secret-stdin" in refused("webhook", "add", "team", "--url",
                                       "http://127.0.0.1/x", "--secret-stdin", stdin="\n")
    assert "PROJECT 'Team!'" in refused("webhook", "add", "Team!", "--url", "http://h/")
    assert "PROJECT 'team': project 'team' does not exist" in refused(
        "webhook", "add", "team", "--url", "http://127.0.0.1/x")
    created = registry_cli("project", "create", "team", "--root", str(root))
    assert created.returncode == 0, created.stderr
    assert "--since 'last week'" in refused("audit", "--since", "last week")
    assert "NAME 'nope'" in refused("webhook", "remove", "team", "nope")
    done = registry_cli("webhook", "add", "team", "--url", "http://127.0.0.1/x", "--name",
                        "one", "--root", str(root))
    assert done.returncode == 0, done.stderr
    assert "--name 'one'" in refused("webhook", "add", "team", "--url", "http://h/y",
                                     "--name", "one")
    listing = registry_cli("webhook", "list", "team", "--json", "--root", str(root))
    assert [h["url"] for h in json.loads(listing.stdout)] == ["http://127.0.0.1/x"]


def test_the_management_api(tmp_path: Path, receiver: Receiver) -> None:
    (setup,) = start(tmp_path)
    srv = setup.server
    try:
        with srv.client(auth=("ops", USERS["ops"]), local_address="127.0.0.11") as ops:
            r = ops.post("/api/v1/projects/team/webhooks",
                         json={"url": receiver.url("/api"), "name": "api", "secret": SECRET,
                               "events": ["push"]})
            assert r.status_code == 201, r.text
            assert r.json()["events"] == ["PUSH_ARTIFACT"] and r.json()["signed"] is True
            assert "secret" not in r.json()
            again = ops.post("/api/v1/projects/team/webhooks",
                             json={"url": receiver.url("/api"), "name": "api"})
            assert again.status_code == 409, again.text
            bad = ops.post("/api/v1/projects/team/webhooks", json={"url": "ftp://x/"})
            assert bad.status_code == 400 and "url 'ftp://x/'" in bad.json()["errors"][0][
                "message"]
            unknown = ops.post("/api/v1/projects/team/webhooks",
                               json={"url": receiver.url("/x"), "events": ["pull"]})
            assert "unknown event 'pull'" in unknown.json()["errors"][0]["message"]
            listed = ops.get("/api/v1/projects/team/webhooks").json()
            assert [h["name"] for h in listed] == ["api"]
        with setup.client("ci", "127.0.0.12", "repository:team/app:pull,push") as c:
            pushed = Api(c).image("team/app", "7")
        (got,) = receiver.wait("/api", 1)
        assert got.signed_with(SECRET) and got.doc["event_data"]["resources"][0][
            "digest"] == pushed.digest
        with srv.client(auth=("ops", USERS["ops"]), local_address="127.0.0.11") as ops:
            def delivered() -> list[dict[str, Any]] | None:
                rows = ops.get("/api/v1/projects/team/webhooks/deliveries").json()
                return rows if rows and rows[0]["state"] == "delivered" else None

            (row,) = until(delivered, "the delivery through the API")
            assert (row["webhook"], row["attempts"], row["response_code"]) == ("api", 1, 200)

            def logged() -> list[dict[str, Any]] | None:
                events = ops.get("/api/v1/audit", params={"project": "team"}).json()
                return events if any(e["action"] == "push" for e in events) else None

            events = until(logged, "the push in the audit log")
            added = [e for e in events if e["action"] == "webhook.add"]
            assert [(e["user"], e["address"]) for e in added] == [("ops", "127.0.0.11")]
            assert any(e["reference"] == "7" and e["user"] == "ci" and
                       e["address"] == "127.0.0.12" for e in events)
            bad_since = ops.get("/api/v1/audit", params={"since": "soon"})
            assert bad_since.status_code == 400
            assert "since 'soon'" in bad_since.json()["errors"][0]["message"]
            assert ops.delete("/api/v1/projects/team/webhooks/api").status_code == 204
            gone = ops.delete("/api/v1/projects/team/webhooks/api")
            assert gone.status_code == 404, gone.text
        with srv.client(auth=("ci", USERS["ci"])) as ci:
            assert ci.get("/api/v1/audit").status_code == 403
            assert ci.get("/api/v1/audit", params={"project": "team"}).status_code == 403
            assert ci.get("/api/v1/projects/team/webhooks").status_code == 403
            assert ci.get("/api/v1/projects/nope/webhooks").status_code == 404
        setup.cli("project", "member", "add", "other", "ci", "--role", "admin")
        with srv.client(auth=("ci", USERS["ci"]), local_address="127.0.0.13") as ci:
            r = ci.post("/api/v1/projects/other/webhooks", json={"url": receiver.url("/o")})
            assert r.status_code == 201, r.text
            assert [h["name"] for h in ci.get("/api/v1/projects/other/webhooks").json()] == [
                "127.0.0.1-" + receiver.url("/").split(":")[2].rstrip("/")]
            assert ci.get("/api/v1/projects/team/webhooks").status_code == 403

            def own() -> list[dict[str, Any]] | None:
                r = ci.get("/api/v1/audit", params={"project": "other"})
                assert r.status_code == 200, r.text
                return r.json() if any(e["action"] == "webhook.add" for e in r.json()) \
                    else None

            added, *earlier = until(own, "the project admin's own change")
            assert (added["action"], added["user"], added["address"]) == (
                "webhook.add", "ci", "127.0.0.13")
            assert [e["action"] for e in earlier] == ["member.add", "project.create"]
    finally:
        srv.stop()


def test_a_push_over_quota_is_audited_and_sent_to_webhooks(tmp_path: Path,
                                                         receiver: Receiver) -> None:
    (setup,) = start(tmp_path)
    try:
        setup.cli("webhook", "add", "small", "--url", receiver.url("/quota"), "--events",
                  "quota_exceeded", "--secret-stdin", stdin=f"{SECRET}\n")
        data = b"x" * 4096
        with setup.client("ci", "127.0.0.14", "repository:small/app:pull,push") as c:
            r = c.post("/v2/small/app/blobs/uploads/", params={"digest": sha256(data)},
                       content=data, headers={"Content-Type": "application/octet-stream"})
            assert r.status_code in (403, 413), r.text
        (got,) = receiver.wait("/quota", 1)
        assert got.signed_with(SECRET)
        assert got.doc["type"] == "QUOTA_EXCEED" and got.doc["operator"] == "ci"
        assert got.doc["event_data"]["repository"]["repo_full_name"] == "small/app"
        assert "quota" in got.doc["event_data"]["custom_attributes"]["details"]
        (event,) = until(lambda: [e for e in setup.cli("audit", "--project", "small", "--json")
                                  if e["action"] == "quota_exceeded"], "the audit event")
        assert (event["user"], event["address"], event["repository"]) == (
            "ci", "127.0.0.14", "small/app")
    finally:
        setup.server.stop()
