"""The audit log in the PostgreSQL metadata database (table ``audit_events`` of migration
``0006_audit_webhooks.sql``); the same interface as
:class:`~registry.audit.store.SqliteAuditStore`."""

from __future__ import annotations

from collections.abc import Sequence

from registry.audit.events import AuditEvent, AuditQuery
from registry.audit.store import COLUMNS, event_of, row_values, where_clause
from registry.auth.shared_state import shared_store
from registry.config import Settings

__all__ = ["PostgresAuditStore"]


class PostgresAuditStore:
    """Audit events as rows every replica shares."""

    def __init__(self, settings: Settings) -> None:
        self.store = shared_store(settings)
        self.location = f"metadata_url {self.store.url}"

    def add(self, events: Sequence[AuditEvent]) -> None:
        """Keep ``events`` in one transaction."""
        if not events:
            return
        marks = ", ".join(["%s"] * len(COLUMNS))
        with self.store.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(f"INSERT INTO audit_events ({', '.join(COLUMNS)}) "
                            f"VALUES ({marks})", [row_values(e) for e in events])

    def query(self, query: AuditQuery) -> list[AuditEvent]:
        """The events ``query`` selects, newest first."""
        where, params = where_clause(query, "%s")
        with self.store.connection() as conn:
            rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM audit_events{where} "
                                "ORDER BY at DESC, id DESC LIMIT %s",
                                (*params, query.limit)).fetchall()
        return [event_of(r) for r in rows]

    def prune(self, before: float) -> int:
        """Forget the events older than ``before``."""
        with self.store.connection() as conn:
            cursor = conn.execute("DELETE FROM audit_events WHERE at < %s", (before,))
        return cursor.rowcount

    def close(self) -> None:
        """Nothing to close: the connections belong to the shared pool."""
