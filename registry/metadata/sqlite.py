"""The :class:`~registry.metadata.store.MetadataStore` on SQLite.

One database file (the server's ``<root>/metadata.db``), opened by :mod:`layerstore.sqlitedb`
in WAL mode with ``synchronous=FULL``: a write is acknowledged only once its transaction is in
the fsynced WAL, so it survives kill -9 and power loss. Every thread has its own connection, so one
store serves a thread pool, and several processes (server workers, a ``registry gc`` run)
may open the same file. Writes run in ``BEGIN IMMEDIATE`` transactions and wait up to
``busy_timeout`` seconds for the write lock (then ``Unavailable``). Values go in only as
typed parameters, into STRICT tables.

Schema, version 1 (``schema_version`` holds the number so that later versions can migrate)::

    repositories(name PK, created_at)
    blob_links(repo, digest, size, linked_at)             PK (repo, digest); index (digest)
    manifests(repo, digest, media_type, size, subject, artifact_type,
              annotations JSON, refs JSON, created_at)    PK (repo, digest);
                                                          index (repo, subject, digest)
    tags(repo, tag, digest, updated_at)                   PK (repo, tag); index (repo, digest)
    uploads(uuid PK, repo, started_at, labels JSON)       index (started_at)

Digests are stored as their ``algorithm:hex`` strings. The request hot paths are single
statements on primary keys (see :data:`HOT_QUERIES`): ``resolve`` by digest reads
``manifests`` by key, by tag it joins ``tags`` to ``manifests`` key to key; ``blob_size``
reads ``blob_links`` by key.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerstore import sqlitedb
from layerstore.digest import Digest
from layerstore.errors import AlreadyExists, FailedPrecondition, InvalidArgument, Unavailable
from registry.metadata.store import ManifestRecord, TagMoved, TagProtected, UploadRecord
from registry.metadata.values import digest_text as _digest_text
from registry.metadata.values import parse_digest as _digest
from registry.metadata.values import size as _size
from registry.metadata.values import text as _text

__all__ = ["HOT_QUERIES", "SCHEMA_VERSION", "ConnectionSettings", "SqliteMetadataStore"]

SCHEMA_VERSION = 1
_MIN_SQLITE = (3, 37, 0)  # STRICT tables

_SCHEMA_V1 = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT",
    "CREATE TABLE repositories (name TEXT PRIMARY KEY, created_at REAL NOT NULL) "
    "WITHOUT ROWID, STRICT",
    """CREATE TABLE blob_links (
        repo TEXT NOT NULL REFERENCES repositories (name), digest TEXT NOT NULL,
        size INTEGER NOT NULL CHECK (size >= 0), linked_at REAL NOT NULL,
        PRIMARY KEY (repo, digest)) WITHOUT ROWID, STRICT""",
    "CREATE INDEX blob_links_by_digest ON blob_links (digest)",
    """CREATE TABLE manifests (
        repo TEXT NOT NULL REFERENCES repositories (name), digest TEXT NOT NULL,
        media_type TEXT NOT NULL, size INTEGER NOT NULL CHECK (size >= 0), subject TEXT,
        artifact_type TEXT, annotations TEXT, refs TEXT NOT NULL, created_at REAL NOT NULL,
        PRIMARY KEY (repo, digest)) WITHOUT ROWID, STRICT""",
    "CREATE INDEX manifests_by_subject ON manifests (repo, subject, digest) "
    "WHERE subject IS NOT NULL",
    """CREATE TABLE tags (
        repo TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL, updated_at REAL NOT NULL,
        PRIMARY KEY (repo, tag),
        FOREIGN KEY (repo, digest) REFERENCES manifests (repo, digest) ON DELETE CASCADE
    ) WITHOUT ROWID, STRICT""",
    "CREATE INDEX tags_by_digest ON tags (repo, digest)",
    """CREATE TABLE uploads (
        uuid TEXT PRIMARY KEY, repo TEXT NOT NULL REFERENCES repositories (name),
        started_at REAL NOT NULL, labels TEXT NOT NULL) WITHOUT ROWID, STRICT""",
    "CREATE INDEX uploads_by_start ON uploads (started_at)",
)

# Statements that take the schema from version N to N + 1, keyed by N.
_MIGRATIONS: dict[int, tuple[str, ...]] = {}

_SCHEMA = sqlitedb.Schema(
    what="metadata database", version=SCHEMA_VERSION, create=_SCHEMA_V1,
    migrations=_MIGRATIONS,
)

_MANIFEST_COLUMNS = (
    "m.digest, m.media_type, m.size, m.subject, m.artifact_type, m.annotations, m.refs, "
    "m.created_at"
)
_RESOLVE_DIGEST = (
    f"SELECT {_MANIFEST_COLUMNS} FROM manifests AS m WHERE m.repo = ? AND m.digest = ?"
)
_RESOLVE_TAG = (
    f"SELECT {_MANIFEST_COLUMNS} FROM tags AS t "
    "JOIN manifests AS m ON m.repo = t.repo AND m.digest = t.digest "
    "WHERE t.repo = ? AND t.tag = ?"
)
_BLOB_SIZE = "SELECT size FROM blob_links WHERE repo = ? AND digest = ?"

HOT_QUERIES: Mapping[str, str] = {
    "resolve_digest": _RESOLVE_DIGEST,
    "resolve_tag": _RESOLVE_TAG,
    "blob_size": _BLOB_SIZE,
}
"""The statements on the request hot paths, each with two parameters ``(repo, key)``."""

_fork_generation = 0


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass(frozen=True)
class ConnectionSettings:
    """The settings a connection of the store runs with (as SQLite reports them)."""

    journal_mode: str
    synchronous: str
    busy_timeout_ms: int
    foreign_keys: bool


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced and remembers the process it belongs to."""

    generation: int = 0


def _json_mapping(value: Mapping[str, str] | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(dict(value), sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as err:
        raise InvalidArgument(f"{what} cannot be stored: {err}") from None


def _record(row: tuple[Any, ...]) -> ManifestRecord:
    digest, media_type, size, subject, artifact_type, annotations, refs, created_at = row
    return ManifestRecord(
        digest=_digest(digest),
        media_type=media_type,
        size=size,
        references=tuple(_digest(ref) for ref in json.loads(refs)),
        subject=None if subject is None else _digest(subject),
        artifact_type=artifact_type,
        annotations=None if annotations is None else json.loads(annotations),
        created_at=created_at,
    )


def _upload(row: tuple[Any, ...]) -> UploadRecord:
    uuid, repo, started_at, labels = row
    return UploadRecord(uuid=uuid, repository=repo, started_at=started_at,
                        labels=json.loads(labels))


def _page(sql: str, args: list[Any], column: str, last: str | None, n: int | None) -> str:
    """Append the ``last``/``n`` pagination of a sorted listing to ``sql`` and ``args``."""
    if last is not None:
        sql += f" AND {column} > ?"
        args.append(_text(last, "last"))
    sql += f" ORDER BY {column}"
    if n is not None:
        if type(n) is not int or n < 0:
            raise InvalidArgument(f"n must be a non-negative int, not {n!r}")
        sql += " LIMIT ?"
        args.append(n)
    return sql


class SqliteMetadataStore:
    """Registry metadata in one SQLite file; see the module docstring."""

    def __init__(self, path: Path | str, *, busy_timeout: float = sqlitedb.BUSY_TIMEOUT,
                 trace: Callable[[str], None] | None = None) -> None:
        """Open (creating or migrating if needed) the database at ``path``.

        ``busy_timeout`` is how many seconds a statement waits for another writer; ``trace``,
        if given, is called with every SQL statement the store's connections run.
        """
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise FailedPrecondition(
                f"SQLite {sqlite3.sqlite_version} is too old for the metadata store "
                f"(need {'.'.join(map(str, _MIN_SQLITE))} or newer)"
            )
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float) \
                or busy_timeout < 0:
            raise InvalidArgument(f"busy_timeout must be >= 0 seconds, not {busy_timeout!r}")
        self._path = Path(path)
        self._busy_timeout = float(busy_timeout)
        self._trace = trace
        self._local = threading.local()
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._inherited: list[_Connection] = []
        self._guard = threading.Lock()
        self._closed = False
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InvalidArgument(
                f"cannot create the directory of metadata database {str(path)!r}: "
                f"{err.strerror}"
            ) from None
        self._initialize()

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    def __repr__(self) -> str:
        return f"SqliteMetadataStore({str(self._path)!r})"

    # Repositories.

    def repositories(self, last: str | None = None, n: int | None = None) -> list[str]:
        """Repository names holding a link or a manifest, sorted, after ``last``, at most
        ``n``."""
        args: list[Any] = []
        sql = _page(
            "SELECT name FROM repositories AS r WHERE "
            "(EXISTS (SELECT 1 FROM blob_links WHERE repo = r.name) "
            "OR EXISTS (SELECT 1 FROM manifests WHERE repo = r.name))",
            args, "name", last, n,
        )
        return [name for (name,) in self._rows(sql, args)]

    def namespace_usage(self, namespace: str) -> tuple[int, int]:
        """``(repositories, bytes)`` under ``namespace/``: the repositories holding a link or
        a manifest, and the size of the distinct blobs and manifests they hold (a digest
        held by several of them counts once). Range scans of the primary keys."""
        low = _text(namespace, "namespace") + "/"
        high = low[:-1] + "0"
        rows = self._rows(
            "WITH held (repo, digest, size) AS ("
            "SELECT repo, digest, size FROM blob_links WHERE repo >= ?1 AND repo < ?2 "
            "UNION ALL SELECT repo, digest, size FROM manifests WHERE repo >= ?1 AND repo < ?2) "
            "SELECT (SELECT count(DISTINCT repo) FROM held), "
            "(SELECT coalesce(sum(size), 0) FROM "
            "(SELECT max(size) AS size FROM held GROUP BY digest))", (low, high))
        return int(rows[0][0]), int(rows[0][1])

    def repository_usage(self, repository: str) -> int:
        """The bytes ``repository`` holds (distinct digests of its links and manifests)."""
        rows = self._rows(
            "WITH held (digest, size) AS (SELECT digest, size FROM blob_links WHERE repo = ?1 "
            "UNION ALL SELECT digest, size FROM manifests WHERE repo = ?1) "
            "SELECT coalesce(sum(size), 0) FROM (SELECT max(size) AS size FROM held "
            "GROUP BY digest)", (_text(repository, "repository"),))
        return int(rows[0][0])

    def namespace_holds(self, namespace: str, digest: Digest) -> bool:
        """Whether a repository under ``namespace/`` links blob ``digest`` or holds it as a
        manifest (the digest indexes, then the repository range)."""
        low = _text(namespace, "namespace") + "/"
        key = _digest_text(digest, "digest")
        rows = self._rows(
            "SELECT EXISTS (SELECT 1 FROM blob_links WHERE digest = ?1 AND repo >= ?2 "
            "AND repo < ?3) OR EXISTS (SELECT 1 FROM manifests WHERE digest = ?1 "
            "AND repo >= ?2 AND repo < ?3)", (key, low, low[:-1] + "0"))
        return bool(rows[0][0])

    def repository_exists(self, repository: str) -> bool:
        """Whether the repository holds any link or manifest."""
        rows = self._rows(
            "SELECT EXISTS (SELECT 1 FROM blob_links WHERE repo = ?1) "
            "OR EXISTS (SELECT 1 FROM manifests WHERE repo = ?1)",
            (repository,),
        )
        return bool(rows[0][0])

    # Blob links.

    def link_blob(self, repository: str, digest: Digest, size: int) -> None:
        """Make blob ``digest`` visible in ``repository`` (idempotent; the first link's size
        and time are kept)."""
        repo = _text(repository, "repository")
        key = _digest_text(digest, "blob digest")
        size = _size(size, "blob size")
        now = time.time()
        with self._write() as conn:
            self._ensure_repository(conn, repo, now)
            conn.execute(
                "INSERT INTO blob_links (repo, digest, size, linked_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (repo, digest) DO NOTHING",
                (repo, key, size, now),
            )

    def blob_size(self, repository: str, digest: Digest) -> int | None:
        """The size of a blob linked into ``repository``, or ``None`` if it is not linked."""
        rows = self._rows(_BLOB_SIZE, (repository, str(digest)))
        return rows[0][0] if rows else None

    def unlink_blob(self, repository: str, digest: Digest) -> bool:
        """Remove a blob link; whether there was one."""
        with self._write() as conn:
            cursor = conn.execute(
                "DELETE FROM blob_links WHERE repo = ? AND digest = ?", (repository, str(digest))
            )
            return cursor.rowcount > 0

    def linked_blobs(self) -> set[Digest]:
        """Every digest linked into any repository."""
        rows = self._rows("SELECT DISTINCT digest FROM blob_links")
        return {_digest(digest) for (digest,) in rows}

    def forget_blob(self, digest: Digest) -> None:
        """Remove every link to ``digest``."""
        with self._write() as conn:
            conn.execute("DELETE FROM blob_links WHERE digest = ?", (str(digest),))

    # Manifests.

    def put_manifest(self, repository: str, record: ManifestRecord,
                     tags: tuple[str, ...] = (), *, fixed: tuple[str, ...] = ()) -> None:
        """Store (or refresh: the row becomes ``record``) a manifest and point ``tags`` at it,
        in one transaction; a tag of ``fixed`` pointing elsewhere is ``TagMoved`` (the write
        lock is held from the check to the commit)."""
        repo = _text(repository, "repository")
        if not isinstance(record, ManifestRecord):
            raise InvalidArgument(f"record must be a ManifestRecord, not {type(record).__name__}")
        if isinstance(tags, str):
            raise InvalidArgument(f"tags must be a tuple of strings, not the string {tags!r}")
        tag_names = [_text(tag, "tag") for tag in tags]
        values = (
            repo,
            _digest_text(record.digest, "manifest digest"),
            _text(record.media_type, "media type"),
            _size(record.size, "manifest size"),
            None if record.subject is None else _digest_text(record.subject, "subject"),
            None if record.artifact_type is None
            else _text(record.artifact_type, "artifact type"),
            _json_mapping(record.annotations, "annotations"),
            json.dumps([_digest_text(ref, "reference") for ref in record.references]),
            float(record.created_at),
        )
        now = time.time()
        kept = [tag for tag in tag_names if tag in set(fixed)]
        with self._write() as conn:
            for tag in kept:
                row = conn.execute("SELECT digest FROM tags WHERE repo = ? AND tag = ?",
                                   (repo, tag)).fetchone()
                if row is not None and row[0] != values[1]:
                    raise TagMoved(repo, tag, _digest(row[0]))
            self._ensure_repository(conn, repo, now)
            conn.execute(
                "INSERT INTO manifests (repo, digest, media_type, size, subject, artifact_type, "
                "annotations, refs, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (repo, digest) DO UPDATE SET media_type = excluded.media_type, "
                "size = excluded.size, subject = excluded.subject, "
                "artifact_type = excluded.artifact_type, annotations = excluded.annotations, "
                "refs = excluded.refs, created_at = excluded.created_at",
                values,
            )
            conn.executemany(
                "INSERT INTO tags (repo, tag, digest, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest, "
                "updated_at = excluded.updated_at",
                [(repo, tag, values[1], now) for tag in tag_names],
            )

    def get_manifest(self, repository: str, digest: Digest) -> ManifestRecord | None:
        """A manifest of ``repository`` by digest."""
        rows = self._rows(_RESOLVE_DIGEST, (repository, str(digest)))
        return _record(rows[0]) if rows else None

    def resolve(self, repository: str, reference: str) -> ManifestRecord | None:
        """A manifest by tag or by digest string (anything with a ``:``), in one query."""
        sql = _RESOLVE_DIGEST if ":" in reference else _RESOLVE_TAG
        rows = self._rows(sql, (repository, reference))
        return _record(rows[0]) if rows else None

    def delete_manifest(self, repository: str, digest: Digest, *,
                        protected: Callable[[str], bool] | None = None) -> bool:
        """Remove a manifest and every tag pointing at it; whether it existed. A tag that
        ``protected`` names is ``TagProtected`` (checked under the write lock)."""
        key = (repository, str(digest))
        with self._write() as conn:
            if protected is not None:
                for (tag,) in conn.execute("SELECT tag FROM tags WHERE repo = ? AND digest = ? "
                                           "ORDER BY tag", key).fetchall():
                    if protected(tag):
                        raise TagProtected(repository, tag, digest)
            conn.execute("DELETE FROM tags WHERE repo = ? AND digest = ?", key)
            cursor = conn.execute("DELETE FROM manifests WHERE repo = ? AND digest = ?", key)
            return cursor.rowcount > 0

    def manifests(self, repository: str) -> Iterator[ManifestRecord]:
        """Every manifest of ``repository``, sorted by digest (read in one snapshot)."""
        rows = self._rows(f"SELECT {_MANIFEST_COLUMNS} FROM manifests AS m WHERE m.repo = ? "
                          "ORDER BY m.digest", (repository,))
        return iter([_record(row) for row in rows])

    # Tags.

    def tags(self, repository: str, last: str | None = None,
             n: int | None = None) -> list[str]:
        """Tag names of ``repository``, sorted, after ``last``, at most ``n``."""
        args: list[Any] = [repository]
        sql = _page("SELECT tag FROM tags WHERE repo = ?", args, "tag", last, n)
        return [tag for (tag,) in self._rows(sql, args)]

    def tagged(self, repository: str) -> dict[str, Digest]:
        """Every tag of ``repository`` with the digest it points at."""
        rows = self._rows("SELECT tag, digest FROM tags WHERE repo = ? ORDER BY tag",
                          (repository,))
        return {tag: _digest(digest) for tag, digest in rows}

    def delete_tag(self, repository: str, tag: str) -> bool:
        """Remove one tag; whether it existed."""
        with self._write() as conn:
            cursor = conn.execute("DELETE FROM tags WHERE repo = ? AND tag = ?", (repository, tag))
            return cursor.rowcount > 0

    def referrers(self, repository: str, subject: Digest,
                  artifact_type: str | None = None) -> list[ManifestRecord]:
        """Manifests of ``repository`` whose ``subject`` is ``subject`` (optionally only of
        one artifact type), sorted by digest."""
        sql = f"SELECT {_MANIFEST_COLUMNS} FROM manifests AS m WHERE m.repo = ? AND m.subject = ?"
        args: list[Any] = [repository, str(subject)]
        if artifact_type is not None:
            sql += " AND m.artifact_type = ?"
            args.append(artifact_type)
        rows = self._rows(sql + " ORDER BY m.digest", args)
        return [_record(row) for row in rows]

    # Uploads.

    def start_upload(self, record: UploadRecord) -> None:
        """Record a new upload session; ``AlreadyExists`` if its uuid is taken."""
        if not isinstance(record, UploadRecord):
            raise InvalidArgument(f"record must be an UploadRecord, not {type(record).__name__}")
        repo = _text(record.repository, "repository")
        values = (
            _text(record.uuid, "upload uuid"),
            repo,
            float(record.started_at),
            _json_mapping(record.labels, "upload labels") or "{}",
        )
        with self._write() as conn:
            self._ensure_repository(conn, repo, time.time())
            cursor = conn.execute(
                "INSERT INTO uploads (uuid, repo, started_at, labels) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (uuid) DO NOTHING",
                values,
            )
            if cursor.rowcount == 0:
                raise AlreadyExists(f"upload {record.uuid!r} already exists")

    def get_upload(self, uuid: str) -> UploadRecord | None:
        """An open upload session."""
        rows = self._rows("SELECT uuid, repo, started_at, labels FROM uploads WHERE uuid = ?",
                          (uuid,))
        return _upload(rows[0]) if rows else None

    def update_upload(self, uuid: str, labels: Mapping[str, str]) -> bool:
        """Replace the labels of an open upload session; whether it exists."""
        text = _json_mapping(labels, "upload labels") or "{}"
        with self._write() as conn:
            return conn.execute("UPDATE uploads SET labels = ? WHERE uuid = ?",
                                (text, uuid)).rowcount > 0

    def end_upload(self, uuid: str) -> bool:
        """Forget an upload session; whether it existed."""
        with self._write() as conn:
            return conn.execute("DELETE FROM uploads WHERE uuid = ?", (uuid,)).rowcount > 0

    def uploads(self, started_before: float | None = None) -> list[UploadRecord]:
        """Open upload sessions (optionally only those started before a time), oldest first."""
        sql = "SELECT uuid, repo, started_at, labels FROM uploads"
        args: list[Any] = []
        if started_before is not None:
            sql += " WHERE started_at < ?"
            args.append(float(started_before))
        rows = self._rows(sql + " ORDER BY started_at, uuid", args)
        return [_upload(row) for row in rows]

    # Maintenance.

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the database."""
        return int(self._rows("SELECT version FROM schema_version")[0][0])

    def connection_settings(self) -> ConnectionSettings:
        """The settings of the calling thread's connection."""
        levels = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
        return ConnectionSettings(
            journal_mode=self._rows("PRAGMA journal_mode")[0][0],
            synchronous=levels[self._rows("PRAGMA synchronous")[0][0]],
            busy_timeout_ms=self._rows("PRAGMA busy_timeout")[0][0],
            foreign_keys=bool(self._rows("PRAGMA foreign_keys")[0][0]),
        )

    def integrity_check(self) -> list[str]:
        """Problems ``PRAGMA integrity_check`` and ``foreign_key_check`` find; empty if none."""
        problems = [row[0] for row in self._rows("PRAGMA integrity_check")]
        if problems == ["ok"]:
            problems = []
        return problems + [f"foreign key violation: {tuple(row)}"
                           for row in self._rows("PRAGMA foreign_key_check")]

    def close(self) -> None:
        """Close every connection of the store; using it afterwards is an error."""
        with self._guard:
            self._closed = True
            connections = [c for c in self._connections if c.generation == _fork_generation]
        for conn in connections:
            conn.close()

    # Internals.

    def _conn(self) -> _Connection:
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.generation == _fork_generation and not self._closed:
            return conn
        if self._closed:
            raise FailedPrecondition(f"{self!r} is closed")
        if conn is not None:
            # Inherited across fork: never touch it again, and never let it be closed here.
            self._inherited.append(conn)
        conn = self._connect()
        self._local.conn = conn
        return conn

    def _connect(self) -> _Connection:
        conn = sqlitedb.connect(self._path, what="metadata database",
                                busy_timeout=self._busy_timeout, factory=_Connection)
        assert isinstance(conn, _Connection)
        conn.generation = _fork_generation
        if self._trace is not None:
            conn.set_trace_callback(self._trace)
        with self._guard:
            self._connections.add(conn)
        return conn

    def _initialize(self) -> None:
        try:
            sqlitedb.migrate(self._conn(), _SCHEMA, path=self._path)
        except sqlite3.OperationalError as err:
            if sqlitedb.is_busy(err):
                raise self._busy(err) from err
            raise

    @contextmanager
    def _write(self) -> Iterator[_Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed at the end, rolled back on error."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as err:
            if sqlitedb.is_busy(err):
                raise self._busy(err) from err
            raise

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Every row one read statement gives."""
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.OperationalError as err:
            if sqlitedb.is_busy(err):
                raise self._busy(err) from err
            raise

    def _busy(self, err: sqlite3.Error) -> Unavailable:
        return Unavailable(f"metadata database {str(self._path)!r} is busy: {err}")

    @staticmethod
    def _ensure_repository(conn: sqlite3.Connection, repo: str, now: float) -> None:
        conn.execute(
            "INSERT INTO repositories (name, created_at) VALUES (?, ?) "
            "ON CONFLICT (name) DO NOTHING",
            (repo, now),
        )
