"""The audit log's and the webhooks' parts on their own: ``--since`` parsing, the Harbor
payload, the signature, the recorder's batching, overflow and shutdown, the SQLite stores,
the claim that keeps two workers off one delivery, and the backoff."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import threading
from pathlib import Path

import pytest

from layerstore.errors import Unavailable
from registry.audit import recorder as recorder_module
from registry.audit.events import AuditError, AuditEvent, AuditQuery, parse_since
from registry.audit.recorder import AuditRecorder
from registry.audit.store import SqliteAuditStore
from registry.webhooks.model import (
    DELIVERED,
    FAILED,
    PENDING,
    WebhookError,
    check_url,
    parse_events,
)
from registry.webhooks.payload import payload_of, sign, verify
from registry.webhooks.service import WebhookService
from registry.webhooks.store import SqliteWebhookStore
from registry.webhooks.worker import DeliveryWorker, Outcome

pytestmark = pytest.mark.unit


def test_since_takes_iso_times_and_durations() -> None:
    now = 1_800_000_000.0
    assert parse_since("1h", now) == now - 3600
    assert parse_since("7d", now) == now - 7 * 86400
    assert parse_since("90s", now) == now - 90
    day = datetime.datetime(2026, 1, 31, tzinfo=datetime.UTC).timestamp()
    assert parse_since("2026-01-31") == day
    assert parse_since("2026-01-31T12:00:00Z") == day + 12 * 3600
    assert parse_since("2026-01-31T12:00:00+01:00") == day + 11 * 3600
    for bad in ("yesterday", "1y", "-1h", ""):
        with pytest.raises(AuditError, match="--since"):
            parse_since(bad, now)
    with pytest.raises(AuditError, match="--limit"):
        AuditQuery(limit=0)


def test_the_payload_is_harbors_and_the_signature_an_hmac() -> None:
    event = AuditEvent("push", "ci", "10.0.0.5", "team/sub/app", "v1", "sha256:" + "a" * 64,
                       at=1_767_225_600.5, host="reg.example:5000")
    body = payload_of("PUSH_ARTIFACT", event)
    doc = json.loads(body)
    assert doc == {"type": "PUSH_ARTIFACT", "occur_at": 1767225600, "operator": "ci",
                   "event_data": {
                       "resources": [{"digest": "sha256:" + "a" * 64, "tag": "v1",
                                      "resource_url": "reg.example:5000/team/sub/app:v1"}],
                       "repository": {"date_created": 1767225600, "name": "sub/app",
                                      "namespace": "team", "repo_full_name": "team/sub/app",
                                      "repo_type": "private"}}}
    by_digest = AuditEvent("delete", "ops", "", "team/app", "sha256:" + "b" * 64,
                           "sha256:" + "b" * 64, host="h")
    resource = json.loads(payload_of("DELETE_ARTIFACT", by_digest))["event_data"]["resources"][0]
    assert resource["tag"] == "" and resource["resource_url"] == "h/team/app@sha256:" + "b" * 64
    quota = json.loads(payload_of("QUOTA_EXCEED", AuditEvent(
        "quota_exceeded", repository="team/app", detail="quota 1 GiB, usage 1.2 GiB")))
    assert quota["event_data"]["custom_attributes"] == {"details": "quota 1 GiB, usage 1.2 GiB"}
    data = body.encode()
    expected = hmac.new(b"key", data, hashlib.sha256).hexdigest()
    assert sign("key", data) == f"sha256={expected}"
    assert verify("key", data, f"sha256={expected}")
    assert not verify("other", data, f"sha256={expected}")


def test_webhook_arguments_are_checked() -> None:
    assert check_url("http://127.0.0.1:8080/hook") == "http://127.0.0.1:8080/hook"
    for bad in ("127.0.0.1:8080/hook", "ftp://h/x", "http:///x", "http://h:99999/",
                "http://h/a b"):
        with pytest.raises(WebhookError, match="--url"):
            check_url(bad)
    assert parse_events("push, DELETE,push") == ("PUSH_ARTIFACT", "DELETE_ARTIFACT")
    assert parse_events("QUOTA_EXCEED") == ("QUOTA_EXCEED",)
    for bad in ("", "pull", "push,scan"):
        with pytest.raises(WebhookError, match="--events"):
            parse_events(bad)


def test_the_recorder_batches_and_writes_everything_at_close(tmp_path: Path) -> None:
    store = SqliteAuditStore(tmp_path / "audit.db")
    recorder = AuditRecorder(store).start()
    threads = [threading.Thread(target=lambda n=n: [recorder.add(AuditEvent(
        "pull", f"user{n}", "127.0.0.1", "team/app", str(i))) for i in range(500)])
        for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorder.close()
    assert len(store.query(AuditQuery(limit=10_000))) == 2000
    assert len(store.query(AuditQuery(user="user3", limit=10_000))) == 500
    assert store.query(AuditQuery(project="other")) == []
    store.close()


def test_a_full_queue_is_written_by_the_caller(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recorder_module, "CAPACITY", 10)
    store = SqliteAuditStore(tmp_path / "audit.db")
    recorder = AuditRecorder(store)  # no writer thread: only overflow writes
    for i in range(25):
        recorder.add(AuditEvent("push", "ci", "::1", "team/app", str(i)))
    assert len(store.query(AuditQuery(limit=100))) == 20
    recorder.close()
    assert len(store.query(AuditQuery(limit=100))) == 25
    assert store.prune(float("inf")) == 25
    store.close()
    broken = AuditRecorder(store)  # closed: every write fails
    for i in range(9):
        broken.add(AuditEvent("pull", "ci", "::1", "team/app", str(i)))
    with pytest.raises(Unavailable, match="the audit log cannot be written"):
        broken.add(AuditEvent("pull", "ci", "::1", "team/app", "9"))


def test_events_become_deliveries_of_the_projects_webhooks(tmp_path: Path) -> None:
    hooks = SqliteWebhookStore(tmp_path / "webhooks.db")
    service = WebhookService(hooks)
    service.add("team", "http://127.0.0.1:9/a", name="all")
    service.add("team", "http://127.0.0.1:9/b", name="pushes", events="push")
    service.add("other", "http://127.0.0.1:9/c", name="other")
    events = [AuditEvent("push", "ci", repository="team/app", reference="1"),
              AuditEvent("pull", "ci", repository="team/app", reference="1"),
              AuditEvent("delete", "ci", repository="team/app", reference="1"),
              AuditEvent("delete", "ci", repository="team/app", reference="sha256:" + "c" * 64,
                         detail="blob"),
              AuditEvent("push", "ci", repository="app", reference="1")]
    assert service.emit(events, now=100.0) == 3
    first = hooks.claim(100.0, 60, 10)
    assert sorted((h.name, d.event_type) for d, h in first) == [
        ("all", "DELETE_ARTIFACT"), ("all", "PUSH_ARTIFACT"), ("pushes", "PUSH_ARTIFACT")]
    assert hooks.claim(100.0, 60, 10) == []  # leased
    assert len(hooks.claim(161.0, 60, 10)) == 3  # the lease ran out
    service.remove("team", "pushes")
    assert {name for name, _ in service.deliveries("team")} == {"all"}
    with pytest.raises(WebhookError, match="NAME 'pushes'"):
        service.remove("team", "pushes")
    hooks.close()


def test_the_worker_backs_off_and_gives_up(tmp_path: Path) -> None:
    hooks = SqliteWebhookStore(tmp_path / "webhooks.db")
    service = WebhookService(hooks)
    service.add("team", "http://127.0.0.1:9/a", name="a")
    service.emit([AuditEvent("push", repository="team/app", reference="1")], now=0.0)
    worker = DeliveryWorker(hooks, max_attempts=3, retry_seconds=10)
    ((delivery, hook),) = hooks.claim(0.0, 60, 10)
    failing = Outcome(500, "HTTP 500")
    worker._finish(delivery, hook, failing)
    ((_, after_one),) = service.deliveries("team")
    assert (after_one.state, after_one.attempts, after_one.response_code) == (PENDING, 1, 500)
    assert 9 < after_one.next_at - after_one.updated_at <= 10.01
    worker._finish(after_one, hook, failing)
    ((_, after_two),) = service.deliveries("team")
    assert 19 < after_two.next_at - after_two.updated_at <= 20.01
    worker._finish(after_two, hook, Outcome(None, "ConnectionRefusedError"))
    ((_, last),) = service.deliveries("team")
    assert (last.state, last.attempts, last.last_error) == (FAILED, 3,
                                                             "ConnectionRefusedError")
    service.emit([AuditEvent("push", repository="team/app", reference="2")], now=0.0)
    ((fresh, _),) = hooks.claim(1.0, 60, 10)
    worker._finish(fresh, hook, Outcome(204, ""))
    states = sorted(d.state for _, d in service.deliveries("team"))
    assert states == [DELIVERED, FAILED]
    service.emit([AuditEvent("push", repository="team/app", reference="3")], now=0.0)
    assert hooks.prune(float("inf")) == 2
    assert [d.state for _, d in service.deliveries("team")] == [PENDING]
    hooks.close()
