"""Where the audit log is kept: :class:`AuditStore` is the seam, :class:`SqliteAuditStore`
keeps it in ``<root>/audit.db`` and :class:`~registry.audit.postgres.PostgresAuditStore` in
the PostgreSQL metadata database (``metadata_url``), so that every replica writes one log.

Schema (version 1)::

    audit_events(id PK, at, action, subject, address, project, repository, reference,
                 digest, detail)       indexes (at), (project, at), (subject, at)
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from layerstore import sqlitedb
from registry.audit.events import AuditEvent, AuditQuery
from registry.config import Settings

__all__ = ["AUDIT_DB", "AuditStore", "SqliteAuditStore", "open_audit_store"]

AUDIT_DB = "audit.db"
COLUMNS = ("at", "action", "subject", "address", "project", "repository", "reference",
           "digest", "detail")

_SCHEMA = sqlitedb.Schema(what="audit log", version=1, create=(
    """CREATE TABLE audit_events (
        id INTEGER PRIMARY KEY, at REAL NOT NULL, action TEXT NOT NULL,
        subject TEXT NOT NULL, address TEXT NOT NULL, project TEXT NOT NULL,
        repository TEXT NOT NULL, reference TEXT NOT NULL, digest TEXT NOT NULL,
        detail TEXT NOT NULL) STRICT""",
    "CREATE INDEX audit_events_by_at ON audit_events (at)",
    "CREATE INDEX audit_events_by_project ON audit_events (project, at)",
    "CREATE INDEX audit_events_by_subject ON audit_events (subject, at)",
))


class AuditStore(Protocol):
    """Keeps audit events and answers queries over them."""

    def add(self, events: Sequence[AuditEvent]) -> None:
        """Keep ``events`` (one transaction)."""

    def query(self, query: AuditQuery) -> list[AuditEvent]:
        """The events ``query`` selects, newest first."""

    def prune(self, before: float) -> int:
        """Forget the events older than ``before``; how many went."""

    def close(self) -> None:
        """Release the store's connections."""


def row_values(event: AuditEvent) -> tuple[Any, ...]:
    """The column values of ``event`` in :data:`COLUMNS` order."""
    return (event.at, event.action, event.subject, event.address, event.project,
            event.repository, event.reference, event.digest, event.detail)


def event_of(row: Sequence[Any]) -> AuditEvent:
    """An event from a row of :data:`COLUMNS`."""
    at, action, subject, address, project, repository, reference, digest, detail = row
    return AuditEvent(action=action, subject=subject, address=address, project=project,
                      repository=repository, reference=reference, digest=digest,
                      detail=detail, at=float(at))


def where_clause(query: AuditQuery, mark: str) -> tuple[str, list[Any]]:
    """The ``WHERE`` of ``query`` with ``mark`` as the parameter placeholder."""
    terms: list[str] = []
    params: list[Any] = []
    for column, value in (("project", query.project), ("subject", query.user)):
        if value is not None:
            terms.append(f"{column} = {mark}")
            params.append(value)
    if query.since is not None:
        terms.append(f"at >= {mark}")
        params.append(query.since)
    if query.actions:
        terms.append(f"action IN ({', '.join([mark] * len(query.actions))})")
        params.extend(query.actions)
    return (" WHERE " + " AND ".join(terms)) if terms else "", params


class SqliteAuditStore:
    """The audit log in a SQLite file of its own (module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlitedb.open_database(path, _SCHEMA)
        self._lock = threading.Lock()

    def add(self, events: Sequence[AuditEvent]) -> None:
        """Keep ``events`` in one transaction."""
        if not events:
            return
        marks = ", ".join("?" * len(COLUMNS))
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(f"INSERT INTO audit_events ({', '.join(COLUMNS)}) "
                                 f"VALUES ({marks})", [row_values(e) for e in events])
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def query(self, query: AuditQuery) -> list[AuditEvent]:
        """The events ``query`` selects, newest first."""
        where, params = where_clause(query, "?")
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {', '.join(COLUMNS)} FROM audit_events{where} "
                "ORDER BY at DESC, id DESC LIMIT ?", (*params, query.limit)).fetchall()
        return [event_of(r) for r in rows]

    def prune(self, before: float) -> int:
        """Forget the events older than ``before``."""
        with self._lock:
            cursor = self._conn.execute("DELETE FROM audit_events WHERE at < ?", (before,))
        return cursor.rowcount

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()


def open_audit_store(settings: Settings) -> AuditStore:
    """The audit log of ``settings``: ``<root>/audit.db``, or the PostgreSQL metadata
    database with ``metadata_url``."""
    if settings.metadata_url:
        from registry.audit.postgres import PostgresAuditStore

        return PostgresAuditStore(settings)
    return SqliteAuditStore(settings.root / AUDIT_DB)


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` is a database that cannot be written now (worth retrying)."""
    return isinstance(exc, sqlite3.Error | OSError) or type(exc).__module__.startswith(
        "psycopg")
