"""The one way every store of the project opens a SQLite database.

:func:`connect` opens a connection with the settings every store runs with: WAL journal,
``synchronous=FULL`` (a committed transaction is in the fsynced WAL, so it survives kill -9 and
power loss), foreign keys enforced, autocommit mode (callers open transactions explicitly,
``BEGIN IMMEDIATE`` for writes) and one busy timeout (:data:`BUSY_TIMEOUT` unless the caller
passes its own). :func:`migrate` brings a database to the current version of a
:class:`Schema`; :func:`open_database` does both.

Schema versions live in a one-row table ``schema_version (version)``. A database without that
table is either new or was written before versions were recorded: the schema's ``create``
statements run (a schema that has such older databases writes them with ``IF NOT EXISTS``, so
they leave existing tables alone), the version becomes ``Schema.baseline`` and the migrations
take it from there to ``Schema.version``, all in one ``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from layerstore.errors import FailedPrecondition, InvalidArgument, Unavailable

__all__ = ["BUSY_TIMEOUT", "Schema", "connect", "is_busy", "migrate", "open_database",
           "schema_version"]

#: Seconds a statement waits for another connection's write lock before failing.
BUSY_TIMEOUT = 30.0
_BUSY_CODES = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED


@dataclass(frozen=True)
class Schema:
    """The tables of one kind of database and how to migrate them.

    ``create`` makes the ``baseline`` version from nothing; ``migrations[n]`` holds the
    statements that take version ``n`` to ``n + 1``; ``version`` is the version this code
    reads and writes. ``what`` names the database in error messages ("snapshot metadata").
    """

    what: str
    version: int
    create: tuple[str, ...]
    migrations: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    baseline: int = 1


def connect(
    path: Path | str,
    *,
    what: str = "database",
    busy_timeout: float = BUSY_TIMEOUT,
    factory: type[sqlite3.Connection] = sqlite3.Connection,
) -> sqlite3.Connection:
    """Open ``path`` (created if missing) with the settings in the module docstring.

    A file that is not a SQLite database, or one that cannot use WAL, is an
    ``InvalidArgument`` / ``FailedPrecondition`` naming ``what`` and the path.
    """
    if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float) \
            or busy_timeout < 0:
        raise InvalidArgument(f"busy_timeout must be >= 0 seconds, not {busy_timeout!r}")
    try:
        conn = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False,
            factory=factory,
        )
    except sqlite3.Error as err:
        raise InvalidArgument(f"cannot open {what} {str(path)!r}: {err}") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as err:
        conn.close()
        if is_busy(err):
            raise Unavailable(f"{what} {str(path)!r} is busy: {err}") from None
        raise InvalidArgument(f"cannot use {str(path)!r} as the {what}: {err}") from None
    if mode != "wal":
        conn.close()
        raise FailedPrecondition(f"{what} {str(path)!r} cannot use WAL mode (got {mode!r})")
    return conn


def is_busy(err: sqlite3.Error) -> bool:
    """Whether ``err`` means another connection holds a lock (SQLITE_BUSY, SQLITE_LOCKED)."""
    return getattr(err, "sqlite_errorcode", None) in _BUSY_CODES


def schema_version(conn: sqlite3.Connection) -> int | None:
    """The version recorded in the database, or None if it records none."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if not exists:
        return None
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return None if row is None else int(row[0])


def migrate(conn: sqlite3.Connection, schema: Schema, *, path: Path | str = "") -> int:
    """Bring the database of ``conn`` to ``schema.version``; return the version.

    A database newer than this code is a ``FailedPrecondition`` (nothing is changed).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(conn)
        if version is None:
            for statement in schema.create:
                conn.execute(statement)
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            conn.execute("DELETE FROM schema_version")
            version = schema.baseline
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        if version > schema.version:
            raise FailedPrecondition(
                f"{schema.what} {str(path)!r} has schema version {version}; "
                f"this program knows versions up to {schema.version}"
            )
        while version < schema.version:
            for statement in schema.migrations[version]:
                conn.execute(statement)
            version += 1
            conn.execute("UPDATE schema_version SET version = ?", (version,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return version


def open_database(
    path: Path | str,
    schema: Schema,
    *,
    busy_timeout: float = BUSY_TIMEOUT,
    factory: type[sqlite3.Connection] = sqlite3.Connection,
) -> sqlite3.Connection:
    """:func:`connect` to ``path`` and :func:`migrate` it to ``schema``'s version."""
    conn = connect(path, what=schema.what, busy_timeout=busy_timeout, factory=factory)
    try:
        migrate(conn, schema, path=path)
    except sqlite3.DatabaseError as err:
        conn.close()
        if is_busy(err):
            raise Unavailable(f"{schema.what} {str(path)!r} is busy: {err}") from None
        raise InvalidArgument(f"cannot use {str(path)!r} as the {schema.what}: {err}") from None
    except BaseException:
        conn.close()
        raise
    return conn
