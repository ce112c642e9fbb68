"""The metadata-store conformance suite on SqliteMetadataStore, plus what is particular to
SQLite: one indexed statement per hot-path lookup, the schema version, connection settings,
a failure inside a transaction, and a forked child."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest

from layerstore.errors import FailedPrecondition, InvalidArgument, Unavailable
from registry.metadata.sqlite import HOT_QUERIES, SCHEMA_VERSION, SqliteMetadataStore
from registry.metadata.store import MetadataStore
from registry.testing.metadata_suite import REPO, MetadataStoreSuite, blob, manifest

pytestmark = pytest.mark.unit


def db_path(tmp_path: Path) -> Path:
    """Where the tests keep the database (the server's ``<root>/metadata.db``)."""
    return tmp_path / "metadata.db"


class TestSqliteMetadataStore(MetadataStoreSuite):
    """The conformance suite."""

    def make_store(self, tmp_path: Path) -> MetadataStore:
        return SqliteMetadataStore(db_path(tmp_path))

    def check_integrity(self, tmp_path: Path) -> None:
        with sqlite3.connect(db_path(tmp_path)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_resolve_and_blob_size_are_one_statement(tmp_path: Path) -> None:
    statements: list[str] = []
    store = SqliteMetadataStore(db_path(tmp_path), trace=statements.append)
    record = manifest("m")
    store.put_manifest(REPO, record, ("v1",))
    store.link_blob(REPO, blob("layer"), 7)
    for reference in ("v1", str(record.digest), "missing"):
        statements.clear()
        store.resolve(REPO, reference)
        assert len(statements) == 1, statements
    statements.clear()
    assert store.blob_size(REPO, blob("layer")) == 7
    assert len(statements) == 1


@pytest.mark.parametrize("name", sorted(HOT_QUERIES))
def test_hot_queries_use_keys(tmp_path: Path, name: str) -> None:
    SqliteMetadataStore(db_path(tmp_path)).close()
    with sqlite3.connect(db_path(tmp_path)) as conn:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + HOT_QUERIES[name],
                                               ("repo", "key"))]
    assert plan, name
    for step in plan:
        assert step.startswith("SEARCH"), plan
        assert "PRIMARY KEY" in step or "INDEX" in step, plan


def test_schema_version(tmp_path: Path) -> None:
    store = SqliteMetadataStore(db_path(tmp_path))
    assert store.schema_version == SCHEMA_VERSION == 1
    store.close()
    with sqlite3.connect(db_path(tmp_path)) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"schema_version", "repositories", "blob_links", "manifests", "tags",
                "uploads"} <= tables
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(FailedPrecondition, match="schema version 99"):
        SqliteMetadataStore(db_path(tmp_path))


def test_connection_settings_in_every_thread(tmp_path: Path) -> None:
    store = SqliteMetadataStore(db_path(tmp_path), busy_timeout=12.5)
    seen = [store.connection_settings()]
    thread = threading.Thread(target=lambda: seen.append(store.connection_settings()))
    thread.start()
    thread.join()
    for settings in seen:
        assert settings.journal_mode == "wal"
        assert settings.synchronous == "FULL"
        assert settings.busy_timeout_ms == 12500
        assert settings.foreign_keys
    assert store.integrity_check() == []


def test_failure_inside_the_transaction_rolls_back(tmp_path: Path) -> None:
    store = SqliteMetadataStore(db_path(tmp_path))
    kept = manifest("kept")
    store.put_manifest(REPO, kept, ("a",))
    with sqlite3.connect(db_path(tmp_path)) as conn:
        conn.execute("CREATE TRIGGER boom BEFORE INSERT ON tags WHEN NEW.tag = 'boom' "
                     "BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
    with pytest.raises(sqlite3.IntegrityError, match="injected failure"):
        store.put_manifest("fresh", manifest("new"), ("first", "boom"))
    with pytest.raises(sqlite3.IntegrityError, match="injected failure"):
        store.put_manifest(REPO, manifest("kept", annotations={"k": "v"}), ("b", "boom"))
    assert store.repositories() == [REPO]
    assert store.get_manifest("fresh", manifest("new").digest) is None
    assert store.tagged("fresh") == {}
    assert store.get_manifest(REPO, kept.digest) == kept
    assert store.tagged(REPO) == {"a": kept.digest}
    store.put_manifest(REPO, manifest("after"), ("c",))
    assert store.tags(REPO) == ["a", "c"]


def test_bad_values_are_refused(tmp_path: Path) -> None:
    store = SqliteMetadataStore(db_path(tmp_path))
    with pytest.raises(InvalidArgument, match="Digest"):
        store.link_blob(REPO, str(blob("a")), 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="size"):
        store.link_blob(REPO, blob("a"), -1)
    with pytest.raises(InvalidArgument, match="string"):
        store.put_manifest(REPO, manifest("m"), "latest")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="repository"):
        store.put_manifest(b"repo", manifest("m"))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="n must be"):
        store.tags(REPO, n=-1)
    assert store.repositories() == []
    assert store.linked_blobs() == set()
    assert store.integrity_check() == []


def test_not_a_database(tmp_path: Path) -> None:
    db_path(tmp_path).write_bytes(b"this is not a database file" * 100)
    with pytest.raises(InvalidArgument, match="metadata database"):
        SqliteMetadataStore(db_path(tmp_path))


def test_busy_database_is_unavailable(tmp_path: Path) -> None:
    store = SqliteMetadataStore(db_path(tmp_path), busy_timeout=0.05)
    with sqlite3.connect(db_path(tmp_path), isolation_level=None) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(Unavailable, match="busy"):
            store.link_blob(REPO, blob("a"), 1)
        assert store.blob_size(REPO, blob("a")) is None
        other.execute("ROLLBACK")
    store.link_blob(REPO, blob("a"), 1)
    assert store.blob_size(REPO, blob("a")) == 1


def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = SqliteMetadataStore(db_path(tmp_path))
    store.link_blob(REPO, blob("a"), 1)
    store.close()
    with pytest.raises(FailedPrecondition, match="closed"):
        store.blob_size(REPO, blob("a"))
    assert SqliteMetadataStore(db_path(tmp_path)).blob_size(REPO, blob("a")) == 1


def _use_in_forked_child(store: SqliteMetadataStore) -> None:
    store.link_blob("forked", blob("child"), 2)
    assert store.resolve(REPO, "v1") == manifest("m")


def test_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    store = SqliteMetadataStore(db_path(tmp_path))
    store.put_manifest(REPO, manifest("m"), ("v1",))
    child = multiprocessing.get_context("fork").Process(target=_use_in_forked_child,
                                                        args=(store,))
    child.start()
    child.join()
    assert child.exitcode == 0
    assert store.blob_size("forked", blob("child")) == 2
    store.put_manifest(REPO, manifest("after"), ("v2",))
    assert store.integrity_check() == []
