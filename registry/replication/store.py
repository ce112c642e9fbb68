"""Where replication rules and their runs are kept: :class:`SqliteReplicationStore` in
``<root>/replication.db``, :class:`PostgresReplicationStore` in the PostgreSQL metadata
database (``metadata_url``; migration ``0008_replication.sql`` makes the same tables)::

    replication_rules(name PK, direction, url, repos, tags, trigger, interval_s, deletes,
        local_url, created_at, next_at, lease_until)
    replication_runs(id PK, rule -> replication_rules ON DELETE CASCADE, trigger, state,
        started_at, finished_at, heartbeat, dry_run, manifests, blobs, skipped, mounted,
        bytes, deleted, error, resumed, runner)

A run holds a lease on its rule (:meth:`~ReplicationStore.claim`: one statement that takes
the lease only when it has run out, so two processes never run one rule at once), renewed
while it works. A scheduled run is started by the process whose
:meth:`~ReplicationStore.advance` moves the rule's ``next_at`` on (a compare-and-set).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol

from layerstore import sqlitedb
from registry.config import Settings
from registry.replication.model import ReplicationError, Rule, Run

__all__ = ["REPLICATION_DB", "PostgresReplicationStore", "ReplicationStore",
           "SqliteReplicationStore", "existing_replication_store", "open_replication_store"]

REPLICATION_DB = "replication.db"
_RULE_COLUMNS = ("name, direction, url, repos, tags, trigger, interval_s, deletes, "
                 "local_url, created_at, next_at")
_RUN_COLUMNS = ("id, rule, trigger, state, started_at, finished_at, heartbeat, dry_run, "
                "manifests, blobs, skipped, mounted, bytes, deleted, error, resumed, runner")
_COUNTS = ("manifests", "blobs", "skipped", "mounted", "bytes", "deleted")

_SCHEMA = sqlitedb.Schema(what="replication database", version=1, create=(
    """CREATE TABLE replication_rules (
        name TEXT PRIMARY KEY, direction TEXT NOT NULL, url TEXT NOT NULL,
        repos TEXT NOT NULL, tags TEXT NOT NULL, trigger TEXT NOT NULL,
        interval_s INTEGER NOT NULL, deletes INTEGER NOT NULL, local_url TEXT NOT NULL,
        created_at REAL NOT NULL, next_at REAL NOT NULL,
        lease_until REAL NOT NULL DEFAULT 0) STRICT""",
    """CREATE TABLE replication_runs (
        id INTEGER PRIMARY KEY,
        rule TEXT NOT NULL REFERENCES replication_rules (name) ON DELETE CASCADE,
        trigger TEXT NOT NULL, state TEXT NOT NULL, started_at REAL NOT NULL,
        finished_at REAL NOT NULL DEFAULT 0, heartbeat REAL NOT NULL DEFAULT 0,
        dry_run INTEGER NOT NULL DEFAULT 0, manifests INTEGER NOT NULL DEFAULT 0,
        blobs INTEGER NOT NULL DEFAULT 0, skipped INTEGER NOT NULL DEFAULT 0,
        mounted INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '',
        resumed INTEGER NOT NULL DEFAULT 0, runner TEXT NOT NULL DEFAULT '') STRICT""",
    "CREATE INDEX replication_runs_by_rule ON replication_runs (rule, id)",
))


class ReplicationStore(Protocol):
    """Keeps the rules and their runs (module docstring)."""

    location: str

    def add(self, rule: Rule) -> None:
        """Keep ``rule``; ReplicationError if one of that name exists."""

    def rules(self) -> list[Rule]:
        """Every rule by name."""

    def get(self, name: str) -> Rule | None:
        """The rule called ``name``."""

    def remove(self, name: str) -> bool:
        """Forget a rule and its runs; whether it existed."""

    def claim(self, name: str, now: float, lease: float) -> bool:
        """Take rule ``name`` for ``lease`` seconds unless another process holds it."""

    def advance(self, name: str, due: float, next_at: float) -> bool:
        """Move the next scheduled run of rule ``name`` from ``due`` to ``next_at``;
        whether this call did it (another process may have been first)."""

    def renew(self, name: str, until: float) -> None:
        """Extend the lease this process holds on rule ``name`` to ``until``."""

    def release(self, name: str) -> None:
        """End the lease on rule ``name``."""

    def start_run(self, run: Run) -> Run:
        """Keep a new run (its ``id`` is assigned)."""

    def update_run(self, run: Run) -> None:
        """Store the run's state, counts, heartbeat and error."""

    def runs(self, rule: str, limit: int) -> list[Run]:
        """The newest ``limit`` runs of ``rule``."""

    def totals(self) -> list[tuple[str, str, int, int, int, int, int, int, int, float]]:
        """Per rule and run state: the number of runs, the sums of their manifests, blobs,
        skipped, mounted, bytes and deleted, and the latest finish (for the metrics)."""

    def close(self) -> None:
        """Release the store's connections."""


def _rule(row: Sequence[Any]) -> Rule:
    (name, direction, url, repos, tags, trigger, interval, deletes, local_url, created,
     next_at) = row
    return Rule(name, direction, url, repos, tags, trigger, int(interval), bool(deletes),
                local_url, float(created), float(next_at))


def _run(row: Sequence[Any]) -> Run:
    values = list(row)
    kinds = {f.name: f.type for f in fields(Run)}
    out: dict[str, Any] = {}
    for name, value in zip(_RUN_COLUMNS.replace(" ", "").split(","), values, strict=True):
        kind = kinds[name]
        out[name] = (float(value) if kind == "float" else bool(value) if kind == "bool"
                     else int(value) if kind == "int" else value)
    return Run(**out)


class _SqlReplicationStore:
    """The statements both databases run; subclasses give the connection and dialect."""

    location = ""
    _mark = "?"

    def _tx(self) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def _sql(self, text: str) -> str:
        return text.replace("?", self._mark)

    def add(self, rule: Rule) -> None:
        """Keep ``rule``; ReplicationError if the name is taken."""
        with self._tx() as conn:
            row = conn.execute(self._sql(
                f"INSERT INTO replication_rules ({_RULE_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING "
                "RETURNING name"),
                (rule.name, rule.direction, rule.url, rule.repos, rule.tags, rule.trigger,
                 rule.interval, int(rule.deletes), rule.local_url, rule.created_at,
                 rule.next_at)).fetchone()
        if row is None:
            raise ReplicationError(f"NAME {rule.name!r}: a replication rule of that name "
                                   "exists already (registry replicate remove it first)")

    def rules(self) -> list[Rule]:
        """Every rule by name."""
        with self._tx() as conn:
            rows = conn.execute(f"SELECT {_RULE_COLUMNS} FROM replication_rules "
                                "ORDER BY name").fetchall()
        return [_rule(r) for r in rows]

    def get(self, name: str) -> Rule | None:
        """The rule called ``name``."""
        with self._tx() as conn:
            row = conn.execute(self._sql(f"SELECT {_RULE_COLUMNS} FROM replication_rules "
                                         "WHERE name = ?"), (name,)).fetchone()
        return None if row is None else _rule(row)

    def remove(self, name: str) -> bool:
        """Forget a rule and its runs."""
        with self._tx() as conn:
            conn.execute(self._sql("DELETE FROM replication_runs WHERE rule = ?"), (name,))
            cursor = conn.execute(self._sql("DELETE FROM replication_rules WHERE name = ?"),
                                  (name,))
            return bool(cursor.rowcount)

    def claim(self, name: str, now: float, lease: float) -> bool:
        """Lease rule ``name`` (module docstring)."""
        with self._tx() as conn:
            done = conn.execute(self._sql(
                "UPDATE replication_rules SET lease_until = ? WHERE name = ? AND "
                "lease_until <= ?"), (now + lease, name, now))
            return bool(done.rowcount)

    def advance(self, name: str, due: float, next_at: float) -> bool:
        """Move rule ``name``'s next scheduled run from ``due`` to ``next_at``."""
        with self._tx() as conn:
            done = conn.execute(self._sql(
                "UPDATE replication_rules SET next_at = ? WHERE name = ? AND next_at = ?"),
                (next_at, name, due))
            return bool(done.rowcount)

    def renew(self, name: str, until: float) -> None:
        """Extend the lease on rule ``name``."""
        with self._tx() as conn:
            conn.execute(self._sql("UPDATE replication_rules SET lease_until = ? WHERE "
                                   "name = ?"), (until, name))

    def release(self, name: str) -> None:
        """End the lease on rule ``name``."""
        with self._tx() as conn:
            conn.execute(self._sql("UPDATE replication_rules SET lease_until = 0 WHERE "
                                   "name = ?"), (name,))

    def start_run(self, run: Run) -> Run:
        """Keep a new run."""
        with self._tx() as conn:
            row = conn.execute(self._sql(
                "INSERT INTO replication_runs (rule, trigger, state, started_at, heartbeat, "
                "dry_run, resumed, runner) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"),
                (run.rule, run.trigger, run.state, run.started_at, run.heartbeat,
                 int(run.dry_run), run.resumed, run.runner)).fetchone()
        return Run(**{**{f.name: getattr(run, f.name) for f in fields(Run)},
                      "id": int(row[0])})

    def update_run(self, run: Run) -> None:
        """Store the run's progress."""
        with self._tx() as conn:
            conn.execute(self._sql(
                "UPDATE replication_runs SET state = ?, finished_at = ?, heartbeat = ?, "
                + ", ".join(f"{c} = ?" for c in _COUNTS) + ", error = ? WHERE id = ?"),
                (run.state, run.finished_at, run.heartbeat,
                 *(getattr(run, c) for c in _COUNTS), run.error[:2000], run.id))

    def runs(self, rule: str, limit: int) -> list[Run]:
        """The newest runs of ``rule``."""
        with self._tx() as conn:
            rows = conn.execute(self._sql(
                f"SELECT {_RUN_COLUMNS} FROM replication_runs WHERE rule = ? "
                "ORDER BY id DESC LIMIT ?"), (rule, limit)).fetchall()
        return [_run(r) for r in rows]

    def totals(self) -> list[tuple[str, str, int, int, int, int, int, int, int, float]]:
        """Per rule and state: runs, summed counts, latest finish."""
        sums = ", ".join(f"COALESCE(SUM({c}), 0)" for c in _COUNTS)
        with self._tx() as conn:
            rows = conn.execute(f"SELECT rule, state, COUNT(*), {sums}, "
                                "COALESCE(MAX(finished_at), 0) FROM replication_runs "
                                "WHERE dry_run = 0 GROUP BY rule, state "
                                "ORDER BY rule, state").fetchall()
        return [(str(r[0]), str(r[1]), *(int(v) for v in r[2:9]), float(r[9]))  # type: ignore[misc]
                for r in rows]


class SqliteReplicationStore(_SqlReplicationStore):
    """Rules and runs in a SQLite file of their own (a ``BEGIN IMMEDIATE`` transaction per
    call, so claims exclude each other across processes)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.location = str(path)
        self._conn = sqlitedb.open_database(path, _SCHEMA)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()


class PostgresReplicationStore(_SqlReplicationStore):
    """Rules and runs in the PostgreSQL metadata database, shared by every replica."""

    _mark = "%s"

    def __init__(self, settings: Settings) -> None:
        from registry.auth.shared_state import shared_store

        self.store = shared_store(settings)
        self.location = f"metadata_url {self.store.url}"

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Any]:
        with self.store.connection() as conn, conn.transaction():
            yield conn

    def close(self) -> None:
        """Nothing to close: the connections belong to the shared pool."""


def existing_replication_store(settings: Settings) -> ReplicationStore | None:
    """The store of ``settings`` if rules may exist: ``None`` for a root without
    ``replication.db`` (which is then not made)."""
    if not settings.metadata_url and not (settings.root / REPLICATION_DB).exists():
        return None
    return open_replication_store(settings)


def open_replication_store(settings: Settings) -> ReplicationStore:
    """The rules of ``settings``: ``<root>/replication.db``, or the PostgreSQL metadata
    database with ``metadata_url``."""
    if settings.metadata_url:
        return PostgresReplicationStore(settings)
    return SqliteReplicationStore(settings.root / REPLICATION_DB)
