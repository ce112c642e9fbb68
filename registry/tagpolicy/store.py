"""Where tag policy rules are kept: the :class:`TagPolicyStore` seam and its SQLite
implementation (``<root>/tagpolicy.db``); :mod:`.postgres` keeps them in the metadata
database when ``metadata_url`` is set.

Rule ids are unique per kind across projects and never reused; removing a rule names its
project too, so an id of another project is unknown.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from layerstore import sqlitedb
from registry.tagpolicy.rules import ImmutableRule, RetentionRule

DB_FILE = "tagpolicy.db"

_SCHEMA = sqlitedb.Schema(
    what="tag policy database", version=1,
    create=(
        """CREATE TABLE immutable_rules (
            id INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL,
            repositories TEXT NOT NULL, tags TEXT NOT NULL, created_at REAL NOT NULL)""",
        "CREATE INDEX immutable_rules_by_project ON immutable_rules (project, id)",
        """CREATE TABLE retention_rules (
            id INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL,
            repositories TEXT NOT NULL, tags TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('latest', 'days', 'always')),
            count INTEGER CHECK (count IS NULL OR count > 0), created_at REAL NOT NULL)""",
        "CREATE INDEX retention_rules_by_project ON retention_rules (project, id)",
    ),
)


class TagPolicyStore(Protocol):
    """The rules of every project. Each method is atomic; listings are sorted by id."""

    def add_immutable(self, rule: ImmutableRule) -> ImmutableRule:
        """Store ``rule`` (its id is ignored); the stored rule with its new id."""
        ...

    def immutable_rules(self, project: str | None = None) -> list[ImmutableRule]:
        """The immutability rules of ``project`` (of every project with ``None``)."""
        ...

    def remove_immutable(self, project: str, rule_id: int) -> bool:
        """Remove an immutability rule of ``project``; whether it existed."""
        ...

    def add_retention(self, rule: RetentionRule) -> RetentionRule:
        """Store ``rule`` (its id is ignored); the stored rule with its new id."""
        ...

    def retention_rules(self, project: str | None = None) -> list[RetentionRule]:
        """The retention rules of ``project`` (of every project with ``None``)."""
        ...

    def remove_retention(self, project: str, rule_id: int) -> bool:
        """Remove a retention rule of ``project``; whether it existed."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


def _immutable(row: Any) -> ImmutableRule:
    return ImmutableRule(int(row[0]), row[1], row[2], row[3], float(row[4]))


def _retention(row: Any) -> RetentionRule:
    return RetentionRule(int(row[0]), row[1], row[2], row[3], row[4],
                         None if row[5] is None else int(row[5]), float(row[6]))


IMMUTABLE_COLUMNS = "id, project, repositories, tags, created_at"
RETENTION_COLUMNS = "id, project, repositories, tags, kind, count, created_at"


class SqliteTagPolicyStore:
    """The rules in one SQLite file (WAL; safe for threads and processes)."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the database at ``path``."""
        self.path = Path(path)
        self.location = f"SQLite {self.path}"
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sqlitedb.open_database(self.path, _SCHEMA).close()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlitedb.connect(self.path, what=_SCHEMA.what)
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def add_immutable(self, rule: ImmutableRule) -> ImmutableRule:
        """Store ``rule``; the stored rule with its id."""
        now = time.time()
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO immutable_rules (project, repositories, tags, created_at) "
                "VALUES (?, ?, ?, ?)", (rule.project, rule.repositories, rule.tags, now))
            rule_id = int(cursor.lastrowid or 0)
        return ImmutableRule(rule_id, rule.project, rule.repositories, rule.tags, now)

    def immutable_rules(self, project: str | None = None) -> list[ImmutableRule]:
        """The immutability rules of ``project`` (every project with ``None``)."""
        rows = self._conn().execute(
            f"SELECT {IMMUTABLE_COLUMNS} FROM immutable_rules "
            "WHERE ?1 IS NULL OR project = ?1 ORDER BY id", (project,)).fetchall()
        return [_immutable(row) for row in rows]

    def remove_immutable(self, project: str, rule_id: int) -> bool:
        """Remove an immutability rule of ``project``; whether it existed."""
        with self._write() as conn:
            return conn.execute("DELETE FROM immutable_rules WHERE project = ? AND id = ?",
                                (project, rule_id)).rowcount > 0

    def add_retention(self, rule: RetentionRule) -> RetentionRule:
        """Store ``rule``; the stored rule with its id."""
        now = time.time()
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO retention_rules (project, repositories, tags, kind, count, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (rule.project, rule.repositories, rule.tags, rule.kind, rule.count, now))
            rule_id = int(cursor.lastrowid or 0)
        return RetentionRule(rule_id, rule.project, rule.repositories, rule.tags, rule.kind,
                             rule.count, now)

    def retention_rules(self, project: str | None = None) -> list[RetentionRule]:
        """The retention rules of ``project`` (every project with ``None``)."""
        rows = self._conn().execute(
            f"SELECT {RETENTION_COLUMNS} FROM retention_rules "
            "WHERE ?1 IS NULL OR project = ?1 ORDER BY id", (project,)).fetchall()
        return [_retention(row) for row in rows]

    def remove_retention(self, project: str, rule_id: int) -> bool:
        """Remove a retention rule of ``project``; whether it existed."""
        with self._write() as conn:
            return conn.execute("DELETE FROM retention_rules WHERE project = ? AND id = ?",
                                (project, rule_id)).rowcount > 0

    def close(self) -> None:
        """Close this thread's connection (others close with their threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
