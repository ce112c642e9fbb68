"""Where webhooks and their deliveries are kept: :class:`WebhookStore` is the seam;
:class:`SqliteWebhookStore` keeps them in ``<root>/webhooks.db`` and
:class:`PostgresWebhookStore` in the PostgreSQL metadata database (``metadata_url``).

Schema (version 1; the same tables in migration ``0006_audit_webhooks.sql``)::

    webhooks(id PK, project, name, url, events, secret, created_at)  UNIQUE (project, name)
    webhook_deliveries(id PK, webhook_id -> webhooks ON DELETE CASCADE, event_type,
        payload, state, attempts, next_at, lease_until, response_code, last_error,
        created_at, updated_at)

A delivery is sent by whoever :meth:`~WebhookStore.claim` s it: claiming sets a lease
(``lease_until``) in the same statement that selects due rows, so two server processes (or,
on PostgreSQL, two replicas: the rows are selected ``FOR UPDATE SKIP LOCKED``) never take the
same row; a process that dies while sending leaves a lease that runs out, and the row is
claimed again.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from layerstore import sqlitedb
from registry.config import Settings
from registry.webhooks.model import PENDING, Delivery, Webhook, WebhookError

__all__ = ["WEBHOOKS_DB", "PostgresWebhookStore", "SqliteWebhookStore", "WebhookStore",
           "open_webhook_store"]

WEBHOOKS_DB = "webhooks.db"
_HOOK_COLUMNS = "id, project, name, url, events, secret, created_at"
_DELIVERY_COLUMNS = ("id, webhook_id, event_type, payload, state, attempts, next_at, "
                     "response_code, last_error, created_at, updated_at")

_SCHEMA = sqlitedb.Schema(what="webhooks database", version=1, create=(
    """CREATE TABLE webhooks (
        id INTEGER PRIMARY KEY, project TEXT NOT NULL, name TEXT NOT NULL,
        url TEXT NOT NULL, events TEXT NOT NULL, secret TEXT NOT NULL,
        created_at REAL NOT NULL, UNIQUE (project, name)) STRICT""",
    """CREATE TABLE webhook_deliveries (
        id INTEGER PRIMARY KEY,
        webhook_id INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
        event_type TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL,
        lease_until REAL NOT NULL DEFAULT 0, response_code INTEGER,
        last_error TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL,
        updated_at REAL NOT NULL) STRICT""",
    "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) "
    "WHERE state = 'pending'",
    "CREATE INDEX webhook_deliveries_by_hook ON webhook_deliveries (webhook_id, id)",
))


class WebhookStore(Protocol):
    """Keeps webhooks and their deliveries (module docstring)."""

    location: str

    def add(self, hook: Webhook) -> Webhook:
        """Keep ``hook`` (its ``id`` is assigned); WebhookError if the project has a webhook
        of that name."""

    def hooks(self, project: str) -> list[Webhook]:
        """The webhooks of ``project`` by name."""

    def remove(self, project: str, name: str) -> bool:
        """Forget a webhook and its deliveries; whether it existed."""

    def enqueue(self, items: Sequence[tuple[int, str, str]], now: float) -> None:
        """New pending deliveries, each ``(webhook_id, event_type, payload)``, due now."""

    def claim(self, now: float, lease: float, limit: int) -> list[tuple[Delivery, Webhook]]:
        """Up to ``limit`` due pending deliveries, leased to the caller for ``lease``
        seconds."""

    def finish(self, delivery: Delivery, *, state: str, next_at: float,
               response_code: int | None, error: str, now: float) -> None:
        """Record an attempt at ``delivery``: its new state, when the next attempt is due,
        the response code and error; the lease ends."""

    def deliveries(self, project: str, name: str | None, limit: int
                   ) -> list[tuple[str, Delivery]]:
        """The newest ``limit`` deliveries of the project's webhooks (or of ``name``), each
        with its webhook's name."""

    def prune(self, before: float) -> int:
        """Forget the delivered and failed deliveries last attempted before ``before``."""

    def close(self) -> None:
        """Release the store's connections."""


def _hook(row: Sequence[Any]) -> Webhook:
    id_, project, name, url, events, secret, created_at = row
    return Webhook(int(id_), project, name, url, tuple(e for e in events.split(",") if e),
                   secret, float(created_at))


def _delivery(row: Sequence[Any]) -> Delivery:
    (id_, webhook_id, event_type, payload, state, attempts, next_at, code, error, created,
     updated) = row
    return Delivery(int(id_), int(webhook_id), event_type, payload, state, int(attempts),
                    float(next_at), None if code is None else int(code), error,
                    float(created), float(updated))


class _SqlWebhookStore:
    """The statements both databases run; subclasses give the connection and the dialect."""

    location = ""
    _mark = "?"
    _skip_locked = ""

    def _tx(self) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def _sql(self, text: str) -> str:
        return text.replace("?", self._mark)

    def add(self, hook: Webhook) -> Webhook:
        """Keep ``hook``; WebhookError if its name is taken in its project."""
        with self._tx() as conn:
            row = conn.execute(self._sql(
                "INSERT INTO webhooks (project, name, url, events, secret, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (project, name) DO NOTHING "
                "RETURNING id"), (hook.project, hook.name, hook.url, ",".join(hook.events),
                                  hook.secret, hook.created_at)).fetchone()
        if row is None:
            raise WebhookError(f"--name {hook.name!r}: project {hook.project!r} has a webhook "
                               "of that name already")
        return Webhook(int(row[0]), hook.project, hook.name, hook.url, hook.events,
                       hook.secret, hook.created_at)

    def hooks(self, project: str) -> list[Webhook]:
        """The webhooks of ``project`` by name."""
        with self._tx() as conn:
            rows = conn.execute(self._sql(f"SELECT {_HOOK_COLUMNS} FROM webhooks "
                                          "WHERE project = ? ORDER BY name"),
                                (project,)).fetchall()
        return [_hook(r) for r in rows]

    def remove(self, project: str, name: str) -> bool:
        """Forget a webhook and its deliveries."""
        with self._tx() as conn:
            cursor = conn.execute(self._sql("DELETE FROM webhooks WHERE project = ? AND "
                                            "name = ?"), (project, name))
            return bool(cursor.rowcount)

    def enqueue(self, items: Sequence[tuple[int, str, str]], now: float) -> None:
        """New pending deliveries, due now."""
        if not items:
            return
        with self._tx() as conn:
            for webhook_id, event_type, payload in items:
                conn.execute(self._sql(
                    "INSERT INTO webhook_deliveries (webhook_id, event_type, payload, state, "
                    "next_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                    (webhook_id, event_type, payload, PENDING, now, now, now))

    def claim(self, now: float, lease: float, limit: int) -> list[tuple[Delivery, Webhook]]:
        """Due pending deliveries, leased to the caller (module docstring)."""
        columns = ", ".join(f"d.{c.strip()}" for c in _DELIVERY_COLUMNS.split(","))
        hook_columns = ", ".join(f"w.{c.strip()}" for c in _HOOK_COLUMNS.split(","))
        with self._tx() as conn:
            rows = conn.execute(self._sql(
                "SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_at <= ? "
                f"AND lease_until <= ? ORDER BY next_at, id LIMIT ?{self._skip_locked}"),
                (now, now, limit)).fetchall()
            ids = [int(r[0]) for r in rows]
            found = []
            for id_ in ids:
                conn.execute(self._sql("UPDATE webhook_deliveries SET lease_until = ? "
                                       "WHERE id = ?"), (now + lease, id_))
                row = conn.execute(self._sql(
                    f"SELECT {columns}, {hook_columns} FROM webhook_deliveries AS d "
                    "JOIN webhooks AS w ON w.id = d.webhook_id WHERE d.id = ?"),
                    (id_,)).fetchone()
                if row is not None:
                    found.append((_delivery(row[:11]), _hook(row[11:])))
        return found

    def finish(self, delivery: Delivery, *, state: str, next_at: float,
               response_code: int | None, error: str, now: float) -> None:
        """Record an attempt at ``delivery``."""
        with self._tx() as conn:
            conn.execute(self._sql(
                "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1, "
                "next_at = ?, lease_until = 0, response_code = ?, last_error = ?, "
                "updated_at = ? WHERE id = ?"),
                (state, next_at, response_code, error[:1000], now, delivery.id))

    def deliveries(self, project: str, name: str | None, limit: int
                   ) -> list[tuple[str, Delivery]]:
        """The newest deliveries of the project's webhooks (or of webhook ``name``)."""
        columns = ", ".join(f"d.{c.strip()}" for c in _DELIVERY_COLUMNS.split(","))
        params: list[Any] = [project]
        extra = ""
        if name is not None:
            extra = " AND w.name = ?"
            params.append(name)
        with self._tx() as conn:
            rows = conn.execute(self._sql(
                f"SELECT w.name, {columns} FROM webhook_deliveries AS d JOIN webhooks AS w "
                f"ON w.id = d.webhook_id WHERE w.project = ?{extra} ORDER BY d.id DESC "
                "LIMIT ?"), (*params, limit)).fetchall()
        return [(r[0], _delivery(r[1:])) for r in rows]

    def prune(self, before: float) -> int:
        """Forget the delivered and failed deliveries last attempted before ``before``."""
        with self._tx() as conn:
            cursor = conn.execute(self._sql(
                "DELETE FROM webhook_deliveries WHERE state <> 'pending' AND updated_at < ?"),
                (before,))
            return int(cursor.rowcount)


class SqliteWebhookStore(_SqlWebhookStore):
    """Webhooks in a SQLite file of their own; one connection, one writer at a time (a
    ``BEGIN IMMEDIATE`` transaction per call, so claims exclude each other across
    processes)."""

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


class PostgresWebhookStore(_SqlWebhookStore):
    """Webhooks in the PostgreSQL metadata database, shared by every replica."""

    _mark = "%s"
    _skip_locked = " FOR UPDATE SKIP LOCKED"

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


def open_webhook_store(settings: Settings) -> WebhookStore:
    """The webhooks of ``settings``: ``<root>/webhooks.db``, or the PostgreSQL metadata
    database with ``metadata_url``."""
    if settings.metadata_url:
        return PostgresWebhookStore(settings)
    return SqliteWebhookStore(settings.root / WEBHOOKS_DB)
