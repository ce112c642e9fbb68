"""The one SQLite opener: settings, versions, migrations, and databases written before it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from builder.solver.cache import BuildCache
from layerstore import sqlitedb
from layerstore.errors import FailedPrecondition, InvalidArgument
from layerstore.images import ImageStore
from layerstore.snapshots.metadata import MetadataStore

SCHEMA = sqlitedb.Schema(
    what="test database", version=3,
    create=("CREATE TABLE IF NOT EXISTS t (a TEXT)",),
    migrations={1: ("ALTER TABLE t ADD COLUMN b TEXT",), 2: ("CREATE INDEX t_b ON t (b)",)},
)


def test_settings(tmp_path: Path) -> None:
    conn = sqlitedb.open_database(tmp_path / "x.db", SCHEMA, busy_timeout=2.5)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 2500
    assert sqlitedb.schema_version(conn) == 3
    conn.close()


def test_migrations_run_in_order(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    old = sqlitedb.Schema(what="test database", version=1, create=SCHEMA.create)
    conn = sqlitedb.open_database(path, old)
    conn.execute("INSERT INTO t (a) VALUES ('kept')")
    conn.close()
    conn = sqlitedb.open_database(path, SCHEMA)
    assert conn.execute("SELECT a, b FROM t").fetchall() == [("kept", None)]
    assert sqlitedb.schema_version(conn) == 3
    conn.close()


def test_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    sqlitedb.open_database(path, SCHEMA).close()
    old = sqlitedb.Schema(what="test database", version=1, create=SCHEMA.create)
    with pytest.raises(FailedPrecondition, match="schema version 3"):
        sqlitedb.open_database(path, old)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    path.write_bytes(b"not a database at all " * 100)
    with pytest.raises(InvalidArgument, match="test database"):
        sqlitedb.open_database(path, SCHEMA)


def _legacy(path: Path, *statements: str) -> None:
    """A database as the stores wrote it before schema versions were recorded."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_unversioned_databases_keep_opening(tmp_path: Path) -> None:
    _legacy(tmp_path / "metadata.db",
            "CREATE TABLE IF NOT EXISTS snapshots (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT "
            "NOT NULL UNIQUE, kind TEXT NOT NULL CHECK (kind IN ('view', 'active', 'committed')),"
            " parent_id INTEGER REFERENCES snapshots(id), labels TEXT NOT NULL DEFAULT '{}',"
            " created_at REAL NOT NULL, updated_at REAL NOT NULL)",
            "CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent_id)",
            "INSERT INTO snapshots (name, kind, labels, created_at, updated_at) "
            "VALUES ('base', 'committed', '{}', 1, 1)")
    meta = MetadataStore(tmp_path / "metadata.db")
    assert [r.name for r in meta.read().all()] == ["base"]
    meta.close()
    _legacy(tmp_path / "images.db",
            "CREATE TABLE IF NOT EXISTS images (name TEXT PRIMARY KEY, descriptor TEXT NOT NULL,"
            " created_at REAL NOT NULL, updated_at REAL NOT NULL)")
    ImageStore(tmp_path / "images.db").close()
    _legacy(tmp_path / "cache.db",
            "CREATE TABLE IF NOT EXISTS steps (key TEXT PRIMARY KEY, chain TEXT, layer TEXT,"
            " diff_id TEXT, created TEXT NOT NULL, size INTEGER NOT NULL DEFAULT 0,"
            " made REAL NOT NULL, used REAL NOT NULL)",
            "INSERT INTO steps VALUES ('k', 'c', NULL, NULL, '2020', 0, 1, 1)")
    cache = BuildCache(tmp_path / "cache.db")
    assert [r.key for r in cache.records()] == ["k"]
    cache.close()
    for name in ("metadata.db", "images.db", "cache.db"):
        conn = sqlite3.connect(tmp_path / name)
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
        conn.close()
