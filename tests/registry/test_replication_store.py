"""The replication store on SQLite and PostgreSQL (migration 0008): rules, leases, the
schedule's compare-and-set, runs and their totals; patterns, durations and the lease
take-over of a dead run's rule."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from registry.auth.shared_state import shared_store
from registry.cli import main
from registry.config import Settings
from registry.replication.lease import take_rule
from registry.replication.metrics import render
from registry.replication.model import (
    FAILED,
    INTERRUPTED,
    RUNNING,
    SCHEDULE,
    SUCCEEDED,
    ReplicationError,
    Rule,
    RuleBusy,
    Run,
    format_duration,
    parse_duration,
)
from registry.replication.patterns import compile_pattern, literal_names
from registry.replication.store import (
    PostgresReplicationStore,
    ReplicationStore,
    SqliteReplicationStore,
)
from registry.testing.engines import PostgresEngine


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReplicationStore]:
    """An empty replication store of each kind."""
    if request.param == "sqlite":
        found: ReplicationStore = SqliteReplicationStore(tmp_path / "replication.db")
    else:
        engine: PostgresEngine = request.getfixturevalue("postgres")
        url = engine.create_database(f"replication_{tmp_path.name[-8:].lower()}"
                                     .replace("-", "_"))
        shared_store(Settings(metadata_url=url), migrate=True)
        found = PostgresReplicationStore(Settings(metadata_url=url))
    yield found
    found.close()


def _rule(name: str = "r", **changes: object) -> Rule:
    return replace(Rule(name, "push", "http://far.example", created_at=1.0), **changes)


def test_rules_leases_and_schedule(store: ReplicationStore) -> None:
    """Rules are kept once by name; one lease at a time; the schedule moves once."""
    store.add(_rule("b", trigger=SCHEDULE, interval=60, next_at=100.0))
    store.add(_rule("a", repos="team/**", deletes=True))
    with pytest.raises(ReplicationError, match="NAME 'a': a replication rule of that name"):
        store.add(_rule("a"))
    assert [r.name for r in store.rules()] == ["a", "b"]
    assert store.get("a") == _rule("a", repos="team/**", deletes=True)
    assert store.claim("a", 10.0, 30.0)
    assert not store.claim("a", 20.0, 30.0)
    store.renew("a", 50.0)
    assert not store.claim("a", 45.0, 30.0)
    assert store.claim("a", 51.0, 30.0)
    store.release("a")
    assert store.claim("a", 52.0, 30.0)
    assert store.advance("b", 100.0, 160.0)
    assert not store.advance("b", 100.0, 160.0)
    got = store.get("b")
    assert got is not None and got.next_at == 160.0
    assert store.remove("b") and not store.remove("b")
    assert store.get("b") is None


def test_runs_and_totals(store: ReplicationStore) -> None:
    """Runs are numbered, updated, listed newest first and summed for the metrics."""
    store.add(_rule("r"))
    first = store.start_run(Run(0, "r", "manual", RUNNING, 10.0, heartbeat=10.0,
                                runner="host:1"))
    store.update_run(replace(first, state=SUCCEEDED, finished_at=20.0, manifests=2,
                             blobs=3, skipped=1, mounted=1, bytes=300, deleted=1))
    second = store.start_run(Run(0, "r", "on_push", RUNNING, 30.0, resumed=first.id))
    store.update_run(replace(second, state=FAILED, finished_at=31.0, error="x" * 5000))
    runs = store.runs("r", 10)
    assert [r.id for r in runs] == [second.id, first.id] and second.id > first.id
    assert runs[0].state == FAILED and len(runs[0].error) == 2000
    assert runs[0].resumed == first.id and runs[1].runner == "host:1"
    assert runs[1].bytes == 300 and runs[1].deleted == 1
    text = render(store)
    assert 'registry_replication_runs_total{rule="r",state="succeeded"} 1' in text
    assert 'registry_replication_runs_total{rule="r",state="failed"} 1' in text
    assert 'registry_replication_bytes_total{rule="r"} 300' in text
    assert 'registry_replication_last_success_timestamp_seconds{rule="r"} 20.000' in text
    store.remove("r")
    assert store.runs("r", 10) == [] and render(store) == ""


def test_a_dead_runner_is_taken_over(store: ReplicationStore) -> None:
    """A running run of a process that is gone is marked interrupted and taken over; a
    live one keeps the rule."""
    store.add(_rule("r"))
    now = 1000.0
    assert store.claim("r", now, 30.0)
    live = store.start_run(Run(0, "r", "manual", RUNNING, now, heartbeat=now,
                               runner=f"{socket.gethostname()}:1"))
    assert live.id
    with pytest.raises(RuleBusy, match="NAME 'r': the rule is being run by another"):
        take_rule(store, store.get("r") or _rule(), now + 1)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    store.update_run(replace(live, state=FAILED))
    dead = store.start_run(Run(0, "r", "manual", RUNNING, now, heartbeat=now + 1,
                               runner=f"{socket.gethostname()}:{pid}"))
    assert take_rule(store, store.get("r") or _rule(), now + 2) == dead.id
    assert store.runs("r", 1)[0].state == INTERRUPTED


@pytest.mark.parametrize(("pattern", "yes", "no"), [
    ("**", ["a", "a/b/c"], []),
    ("team/*", ["team/app"], ["team/a/b", "other/app"]),
    ("team/**", ["team/app", "team/a/b"], ["teamx/a"]),
    ("{a,b}/app", ["a/app", "b/app"], ["c/app"]),
    ("v1.*", ["v1.2", "v1.25"], ["v2.1"]),
    ("release-?", ["release-1"], ["release-10"]),
    ("a.b", ["a.b"], ["aXb"]),
])
def test_patterns(pattern: str, yes: list[str], no: list[str]) -> None:
    """Harbor-style doublestar patterns (the tag policies' grammar)."""
    compiled = compile_pattern(pattern, "--repos")
    assert all(compiled.matches(n) for n in yes)
    assert not any(compiled.matches(n) for n in no)


def test_literal_names() -> None:
    """Patterns without wildcards name their repositories (no catalog needed)."""
    assert literal_names("team/app") == ["team/app"]
    assert literal_names("{a,b}/x-{1,2}") == ["a/x-1", "a/x-2", "b/x-1", "b/x-2"]
    assert literal_names("team/*") is None and literal_names("**") is None


def test_durations() -> None:
    """--every: units, sums, the minimum."""
    assert parse_duration("1h30m") == 5400 and parse_duration("1d") == 86400
    assert format_duration(5400) == "1h30m"
    for bad in ("", "1x", "h", "1h 30m"):
        with pytest.raises(ReplicationError, match="--every"):
            parse_duration(bad)


def test_the_command_on_postgres(postgres: PostgresEngine, monkeypatch: pytest.MonkeyPatch,
                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``registry replicate`` keeps its rules in the metadata database with metadata_url,
    and logs the changes in its audit log."""
    url = postgres.create_database("replication_cli")
    shared_store(Settings(metadata_url=url), migrate=True)
    monkeypatch.setenv("REGISTRY_METADATA_URL", url)
    root = ["--root", str(tmp_path / "root")]
    assert main(["replicate", "add", *root, "pg", "--to", "https://far.example:5000",
                 "--every", "1h", "--repos", "team/**"]) == 0
    assert main(["replicate", "list", *root, "--json"]) == 0
    out = capsys.readouterr().out
    listed = json.loads(out[out.index("["):])
    assert [(r["name"], r["every"], r["repos"]) for r in listed] == [("pg", "1h", "team/**")]
    assert not (tmp_path / "root" / "replication.db").exists()
    assert main(["replicate", "remove", *root, "pg"]) == 0
    assert main(["audit", *root, "--json"]) == 0
    out = capsys.readouterr().out
    actions = [e["action"] for e in json.loads(out[out.index("["):])]
    assert actions[:2] == ["replication.remove", "replication.add"]
