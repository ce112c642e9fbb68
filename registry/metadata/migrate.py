"""Schema migrations of the PostgreSQL metadata store.

The migrations are the ``NNNN_name.sql`` files of :mod:`registry.metadata.migrations`.
``schema_version`` holds one row per applied migration (``version``, ``name``,
``applied_at``); the schema's version is the highest. :func:`migrate` applies the missing
ones in order, each in the same transaction as its row, holding a transaction-scoped
advisory lock so that replicas starting at once apply each migration exactly once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from layerstore.errors import FailedPrecondition

if TYPE_CHECKING:
    import psycopg

MIGRATION_LOCK = 0x7079_6D69_6772  # pg_advisory_xact_lock key held while migrating
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One shipped migration: it takes the schema to ``version``."""

    version: int
    name: str
    sql: str


@cache
def migrations() -> tuple[Migration, ...]:
    """Every shipped migration, by version (1, 2, … without gaps)."""
    found: list[Migration] = []
    for entry in resources.files("registry.metadata.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise FailedPrecondition(f"the shipped migrations are not numbered 1..n: "
                                 f"{[m.version for m in found]}")
    return tuple(found)


def latest_version() -> int:
    """The schema version this registry expects."""
    return migrations()[-1].version


def current_version(conn: psycopg.Connection) -> int:
    """The schema version recorded in the database (0 for an empty one)."""
    exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: psycopg.Connection) -> list[Migration]:
    """Apply the missing migrations on ``conn`` (an autocommit connection); the ones
    applied. ``FailedPrecondition`` if the database is newer than this registry."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        version = current_version(conn)
        check_not_newer(version)
        applied = [m for m in migrations() if m.version > version]
        for migration in applied:
            conn.execute(migration.sql)  # type: ignore[arg-type]
            conn.execute("INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                         (migration.version, migration.name))
    return applied


def check_not_newer(version: int) -> None:
    """``FailedPrecondition`` if ``version`` is beyond what this registry knows."""
    if version > latest_version():
        raise FailedPrecondition(
            f"the metadata database has schema version {version}; this registry knows "
            f"versions up to {latest_version()}"
        )


def check_current(conn: psycopg.Connection) -> int:
    """The recorded version; ``FailedPrecondition`` unless it is :func:`latest_version`."""
    version = current_version(conn)
    check_not_newer(version)
    if version < latest_version():
        raise FailedPrecondition(
            f"the metadata database has schema version {version}, this registry needs "
            f"{latest_version()}: run 'registry migrate'"
        )
    return version
