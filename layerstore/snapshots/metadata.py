"""The sqlite metadata of a snapshotter: one row per snapshot in ``<root>/metadata.db``.

A row holds the snapshot's small integer id (which names its directory), its key or name,
its kind, its parent's id, its labels as JSON and its timestamps. The database is opened
by :func:`layerstore.sqlitedb.open_database` (WAL, one busy timeout, versioned schema);
every change happens inside :meth:`MetadataStore.transaction`, which takes sqlite's write
lock up front (``BEGIN IMMEDIATE``) so a read-check-write sequence is atomic, and rolls back
on any exception. Ids come from ``AUTOINCREMENT`` and are never reused once a transaction
that allocated one has committed.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layerstore.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from layerstore.snapshots.snapshotter import Kind, SnapshotInfo
from layerstore.sqlitedb import Schema, open_database

# Version 1 is the schema written before versions were recorded, hence IF NOT EXISTS.
SCHEMA = Schema(
    what="snapshot metadata",
    version=1,
    create=(
        """CREATE TABLE IF NOT EXISTS snapshots (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('view', 'active', 'committed')),
            parent_id INTEGER REFERENCES snapshots(id),
            labels TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent_id)",
    ),
)

_COLUMNS = "s.id, s.name, s.kind, s.parent_id, p.name, s.labels, s.created_at, s.updated_at"
_SELECT = f"SELECT {_COLUMNS} FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id"


@dataclass(frozen=True)
class SnapshotRecord:
    """One row of the snapshots table."""

    id: int
    name: str
    kind: Kind
    parent_id: int | None
    parent: str | None
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0

    def info(self) -> SnapshotInfo:
        """The public view of this row."""
        return SnapshotInfo(
            name=self.name,
            kind=self.kind,
            parent=self.parent,
            labels=dict(self.labels),
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


def _record(row: tuple[Any, ...]) -> SnapshotRecord:
    sid, name, kind, parent_id, parent, labels, created, updated = row
    return SnapshotRecord(
        id=sid,
        name=name,
        kind=Kind(kind),
        parent_id=parent_id,
        parent=parent,
        labels=json.loads(labels),
        created_at=created,
        updated_at=updated,
    )


def check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """Validate labels (string keys and values); return them as a plain dict."""
    result = dict(labels or {})
    for k, v in result.items():
        if not isinstance(k, str) or not isinstance(v, str) or not k:
            raise InvalidArgument(f"snapshot label {k!r}={v!r}: keys and values must be strings")
    return result


class Transaction:
    """The operations available inside :meth:`MetadataStore.transaction`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        """Wrap a connection that has an open write transaction."""
        self._conn = conn

    def find(self, name: str) -> SnapshotRecord | None:
        """The row named ``name``, or None."""
        row = self._conn.execute(f"{_SELECT} WHERE s.name = ?", (name,)).fetchone()
        return _record(row) if row else None

    def get(self, name: str) -> SnapshotRecord:
        """The row named ``name``; ``NotFound`` if absent."""
        rec = self.find(name)
        if rec is None:
            raise NotFound(f"snapshot {name!r} not found")
        return rec

    def chain(self, sid: int) -> list[SnapshotRecord]:
        """The row ``sid`` followed by its ancestors, nearest first."""
        rows = self._conn.execute(
            f"""
            WITH RECURSIVE chain(id, depth) AS (
                SELECT ?, 0
                UNION ALL
                SELECT snapshots.parent_id, chain.depth + 1 FROM snapshots
                JOIN chain ON snapshots.id = chain.id
                WHERE snapshots.parent_id IS NOT NULL
            )
            {_SELECT} JOIN chain ON chain.id = s.id ORDER BY chain.depth
            """,
            (sid,),
        ).fetchall()
        return [_record(r) for r in rows]

    def insert(
        self, name: str, kind: Kind, parent_id: int | None, labels: Mapping[str, str]
    ) -> SnapshotRecord:
        """Add a row; ``AlreadyExists`` if the name is taken."""
        now = time.time()
        try:
            cur = self._conn.execute(
                "INSERT INTO snapshots (name, kind, parent_id, labels, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (name, kind.value, parent_id, json.dumps(dict(labels), sort_keys=True), now, now),
            )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(f"snapshot {name!r} already exists") from exc
        assert cur.lastrowid is not None
        return self._by_id(cur.lastrowid)

    def _by_id(self, sid: int) -> SnapshotRecord:
        row = self._conn.execute(f"{_SELECT} WHERE s.id = ?", (sid,)).fetchone()
        if row is None:
            raise NotFound(f"snapshot id {sid} not found")
        return _record(row)

    def commit_active(self, key: str, name: str, labels: Mapping[str, str]) -> SnapshotRecord:
        """Turn active ``key`` into committed ``name``, merging ``labels`` over its own."""
        rec = self.get(key)
        if rec.kind is not Kind.ACTIVE:
            raise FailedPrecondition(
                f"snapshot {key!r} is {rec.kind.value}, only an active snapshot can be committed"
            )
        if name != key and self.find(name) is not None:
            raise AlreadyExists(f"snapshot {name!r} already exists")
        merged = {**rec.labels, **labels}
        self._conn.execute(
            "UPDATE snapshots SET name = ?, kind = ?, labels = ?, updated_at = ? WHERE id = ?",
            (
                name,
                Kind.COMMITTED.value,
                json.dumps(merged, sort_keys=True),
                time.time(),
                rec.id,
            ),
        )
        return self._by_id(rec.id)

    def children(self, sid: int) -> list[str]:
        """Names of the snapshots whose parent is ``sid``."""
        rows = self._conn.execute(
            "SELECT name FROM snapshots WHERE parent_id = ? ORDER BY id", (sid,)
        ).fetchall()
        return [r[0] for r in rows]

    def delete(self, sid: int) -> None:
        """Remove row ``sid``."""
        self._conn.execute("DELETE FROM snapshots WHERE id = ?", (sid,))

    def all(self) -> list[SnapshotRecord]:
        """Every row, oldest first."""
        rows = self._conn.execute(f"{_SELECT} ORDER BY s.id").fetchall()
        return [_record(r) for r in rows]


class MetadataStore:
    """The snapshots table in one sqlite file; callers serialise access per process."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the database at ``path``."""
        self._path = path
        try:
            self._conn = open_database(path, SCHEMA)
        except (sqlite3.Error, InvalidArgument) as exc:
            raise Unavailable(f"cannot open snapshot metadata {path}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A write transaction: committed when the block ends, rolled back if it raises.

        sqlite failures (a lock held too long, a full disk) surface as ``Unavailable``.
        """
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(self._conn)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise Unavailable(f"snapshot metadata {self._path}: {exc}") from exc

    def read(self) -> Transaction:
        """Read access outside a write transaction (each query sees committed rows)."""
        return Transaction(self._conn)

    def close(self) -> None:
        """Close the database."""
        self._conn.close()
