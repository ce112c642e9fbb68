"""The :class:`~registry.metadata.store.MetadataStore` on PostgreSQL, shared by any number of
registry replicas.

Connections come from a ``psycopg_pool.ConnectionPool`` (autocommit; a per-statement
timeout): reads are one statement, writes one explicit transaction at READ COMMITTED whose
statements are upserts and deletes on primary keys, so concurrent writers from any thread,
process or host never see each other's partial work. A write that loses a deadlock or a
serialization conflict is retried. The schema is the one of :mod:`registry.metadata.
migrations` (the same model as the SQLite store); opening the store applies the missing
migrations (``migrate=True``) or checks that none is missing.

Failures of the database itself (unreachable, restarted, out of connections, a statement
timeout) raise :class:`~registry.metadata.store.MetadataUnavailable`, which the server
answers with 503; a read whose pooled connection turned out broken is retried once on a
fresh one, after every idle pooled connection is tested (a restart breaks them all). A
process forked from one that used the store opens its own pool.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from layerstore.digest import Digest
from layerstore.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from registry.metadata import migrate as migrations
from registry.metadata.pgrows import has_nul as _has_nul
from registry.metadata.pgrows import limit as _limit
from registry.metadata.pgrows import mapping as _mapping
from registry.metadata.pgrows import record as _record
from registry.metadata.pgrows import redact
from registry.metadata.pgrows import text_value as _text
from registry.metadata.pgrows import upload as _upload
from registry.metadata.store import (
    ManifestRecord,
    MetadataUnavailable,
    TagMoved,
    TagProtected,
    UploadRecord,
)
from registry.metadata.values import digest_text as _digest_text
from registry.metadata.values import parse_digest as _digest
from registry.metadata.values import size as _size
from registry.metadata.values import text

__all__ = ["HOT_QUERIES", "PostgresMetadataStore", "redact"]

T = TypeVar("T")
_RETRIES = 5
_FAILING_WAIT = 1.0  # seconds to wait for a connection while the database is failing
_FAILING_FOR = 5.0  # how long after a failure the short wait applies
_POOL_WAIT = 5.0  # at most this long for a pooled connection (longer: overloaded or down)

_MANIFEST_COLUMNS = (
    "m.digest, m.media_type, m.size, m.subject, m.artifact_type, m.annotations, m.refs, "
    "m.created_at"
)
_RESOLVE_DIGEST = (
    f"SELECT {_MANIFEST_COLUMNS} FROM manifests AS m WHERE m.repo = %s AND m.digest = %s"
)
_RESOLVE_TAG = (
    f"SELECT {_MANIFEST_COLUMNS} FROM tags AS t "
    "JOIN manifests AS m ON m.repo = t.repo AND m.digest = t.digest "
    "WHERE t.repo = %s AND t.tag = %s"
)
_BLOB_SIZE = "SELECT size FROM blob_links WHERE repo = %s AND digest = %s"

HOT_QUERIES: Mapping[str, str] = {
    "resolve_digest": _RESOLVE_DIGEST,
    "resolve_tag": _RESOLVE_TAG,
    "blob_size": _BLOB_SIZE,
}
"""The statements on the request hot paths, each with two parameters ``(repo, key)``."""


class PostgresMetadataStore:
    """Registry metadata in a PostgreSQL database; see the module docstring."""

    def __init__(self, url: str, *, migrate: bool = True, min_size: int = 1,
                 max_size: int = 16, timeout: float = 30.0,
                 connect_timeout: float = 10.0, check_connections: bool = False) -> None:
        """Connect to the database at ``url`` (``postgresql://user:password@host:port/db``),
        apply the missing migrations (``migrate``) or check that the schema is current, and
        open a pool of ``min_size``..``max_size`` connections. ``timeout`` bounds every
        statement (seconds); the wait for a pooled connection is at most 5 s.
        ``check_connections`` checks each pooled connection before handing it out (one more
        round trip; for callers of :meth:`connection`, which is not retried).

        ``MetadataUnavailable`` (naming the URL without its password and the cause) if the
        database cannot be reached; ``FailedPrecondition`` if its schema does not fit."""
        if not isinstance(url, str) or not url.startswith(("postgresql://", "postgres://")):
            raise InvalidArgument(f"metadata URL must be postgresql://…, not {url!r}")
        self._url = url
        self._timeout = float(timeout)
        self._connect_timeout = connect_timeout
        self._sizes = (min_size, max_size)
        self._check = check_connections
        self._guard = threading.Lock()
        self._closed = False
        self._inherited: list[psycopg_pool.ConnectionPool] = []
        self._failed_at = 0.0
        with self._direct() as conn:
            if migrate:
                migrations.migrate(conn)
            self._version = migrations.check_current(conn)
        self._pid = os.getpid()
        self._pool = self._open_pool()

    def __repr__(self) -> str:
        return f"PostgresMetadataStore({redact(self._url)!r})"

    @property
    def url(self) -> str:
        """The database URL without its password."""
        return redact(self._url)

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the database."""
        return int(self._read("SELECT max(version) FROM schema_version")[0][0])

    # Repositories.

    def repositories(self, last: str | None = None, n: int | None = None) -> list[str]:
        """Repository names holding a link or a manifest, sorted, after ``last``, at most
        ``n``."""
        rows = self._read(
            "SELECT name FROM repositories AS r WHERE "
            "(EXISTS (SELECT 1 FROM blob_links WHERE repo = r.name) "
            "OR EXISTS (SELECT 1 FROM manifests WHERE repo = r.name)) "
            "AND (%(last)s::text IS NULL OR name > %(last)s) ORDER BY name LIMIT %(n)s",
            {"last": None if last is None else _text(last, "last"), "n": _limit(n)},
        )
        return [name for (name,) in rows]

    def namespace_usage(self, namespace: str) -> tuple[int, int]:
        """``(repositories, bytes)`` under ``namespace/``: the repositories holding a link or
        a manifest, and the size of the distinct blobs and manifests they hold (a digest
        held by several of them counts once). Range scans of the primary keys."""
        low = text(namespace, "namespace") + "/"
        rows = self._read(
            "WITH held (repo, digest, size) AS ("
            "SELECT repo, digest, size FROM blob_links WHERE repo >= %(low)s AND repo < %(high)s "
            "UNION ALL SELECT repo, digest, size FROM manifests "
            "WHERE repo >= %(low)s AND repo < %(high)s) "
            "SELECT (SELECT count(DISTINCT repo) FROM held), "
            "(SELECT coalesce(sum(size), 0) FROM "
            "(SELECT max(size) AS size FROM held GROUP BY digest) AS d)",
            {"low": low, "high": low[:-1] + "0"})
        if not rows:
            return 0, 0
        return int(rows[0][0]), int(rows[0][1])

    def repository_usage(self, repository: str) -> int:
        """The bytes ``repository`` holds (distinct digests of its links and manifests)."""
        rows = self._read(
            "WITH held (digest, size) AS (SELECT digest, size FROM blob_links "
            "WHERE repo = %(repo)s UNION ALL SELECT digest, size FROM manifests "
            "WHERE repo = %(repo)s) SELECT coalesce(sum(size), 0) FROM "
            "(SELECT max(size) AS size FROM held GROUP BY digest) AS d",
            {"repo": text(repository, "repository")})
        return int(rows[0][0]) if rows else 0

    def namespace_holds(self, namespace: str, digest: Digest) -> bool:
        """Whether a repository under ``namespace/`` links blob ``digest`` or holds it as a
        manifest (the digest indexes, then the repository range)."""
        low = text(namespace, "namespace") + "/"
        rows = self._read(
            "SELECT EXISTS (SELECT 1 FROM blob_links WHERE digest = %(d)s AND repo >= %(low)s "
            "AND repo < %(high)s) OR EXISTS (SELECT 1 FROM manifests WHERE digest = %(d)s "
            "AND repo >= %(low)s AND repo < %(high)s)",
            {"d": _digest_text(digest, "digest"), "low": low, "high": low[:-1] + "0"})
        return bool(rows and rows[0][0])

    def repository_exists(self, repository: str) -> bool:
        """Whether the repository holds any link or manifest."""
        rows = self._read(
            "SELECT EXISTS (SELECT 1 FROM blob_links WHERE repo = %(r)s) "
            "OR EXISTS (SELECT 1 FROM manifests WHERE repo = %(r)s)",
            {"r": repository},
        )
        return bool(rows[0][0])

    # Blob links.

    def link_blob(self, repository: str, digest: Digest, size: int) -> None:
        """Make blob ``digest`` visible in ``repository`` (idempotent; the first link's size
        and time are kept)."""
        repo = _text(repository, "repository")
        key = _digest_text(digest, "blob digest")
        size = _size(size, "blob size")

        def write(conn: psycopg.Connection) -> None:
            now = time.time()
            self._ensure_repository(conn, repo, now)
            conn.execute(
                "INSERT INTO blob_links (repo, digest, size, linked_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (repo, digest) DO NOTHING",
                (repo, key, size, now),
            )

        self._write(write)

    def blob_size(self, repository: str, digest: Digest) -> int | None:
        """The size of a blob linked into ``repository``, or ``None`` if it is not linked."""
        rows = self._read(_BLOB_SIZE, (repository, str(digest)))
        return int(rows[0][0]) if rows else None

    def unlink_blob(self, repository: str, digest: Digest) -> bool:
        """Remove a blob link; whether there was one."""
        if _has_nul([repository, digest]):
            return False
        return self._write(lambda conn: conn.execute(
            "DELETE FROM blob_links WHERE repo = %s AND digest = %s",
            (repository, str(digest))).rowcount > 0)

    def linked_blobs(self) -> set[Digest]:
        """Every digest linked into any repository."""
        return {_digest(d) for (d,) in self._read("SELECT DISTINCT digest FROM blob_links")}

    def forget_blob(self, digest: Digest) -> None:
        """Remove every link to ``digest``."""
        if _has_nul([str(digest)]):
            return
        self._write(lambda conn: conn.execute("DELETE FROM blob_links WHERE digest = %s",
                                              (str(digest),)))

    # Manifests.

    def put_manifest(self, repository: str, record: ManifestRecord,
                     tags: tuple[str, ...] = (), *, fixed: tuple[str, ...] = ()) -> None:
        """Store (or refresh: the row becomes ``record``) a manifest and point ``tags`` at it,
        in one transaction. A tag of ``fixed`` is written by an upsert that updates only a
        row at the same digest: one that points elsewhere (committed by a concurrent writer
        too: the upsert waits for it) is ``TagMoved`` and rolls everything back."""
        repo = _text(repository, "repository")
        if not isinstance(record, ManifestRecord):
            raise InvalidArgument(f"record must be a ManifestRecord, not {type(record).__name__}")
        if isinstance(tags, str):
            raise InvalidArgument(f"tags must be a tuple of strings, not the string {tags!r}")
        tag_names = sorted({_text(tag, "tag") for tag in tags})
        values = (
            repo,
            _digest_text(record.digest, "manifest digest"),
            _text(record.media_type, "media type"),
            _size(record.size, "manifest size"),
            None if record.subject is None else _digest_text(record.subject, "subject"),
            None if record.artifact_type is None
            else _text(record.artifact_type, "artifact type"),
            _mapping(record.annotations, "annotations"),
            [_digest_text(ref, "reference") for ref in record.references],
            float(record.created_at),
        )

        def write(conn: psycopg.Connection) -> None:
            now = time.time()
            self._ensure_repository(conn, repo, now)
            conn.execute(
                "INSERT INTO manifests (repo, digest, media_type, size, subject, "
                "artifact_type, annotations, refs, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (repo, digest) DO UPDATE SET media_type = excluded.media_type, "
                "size = excluded.size, subject = excluded.subject, "
                "artifact_type = excluded.artifact_type, "
                "annotations = excluded.annotations, refs = excluded.refs, "
                "created_at = excluded.created_at",
                values,
            )
            kept = [tag for tag in tag_names if tag in set(fixed)]
            if kept:
                written = {row[0] for row in conn.execute(
                    "INSERT INTO tags (repo, tag, digest, updated_at) "
                    "SELECT %s, tag, %s, %s FROM unnest(%s::text[]) AS tag ORDER BY tag "
                    "ON CONFLICT (repo, tag) DO UPDATE SET updated_at = excluded.updated_at "
                    "WHERE tags.digest = excluded.digest RETURNING tag",
                    (repo, values[1], now, kept),
                ).fetchall()}
                for tag in kept:
                    if tag not in written:
                        row = conn.execute("SELECT digest FROM tags WHERE repo = %s AND "
                                           "tag = %s", (repo, tag)).fetchone()
                        raise TagMoved(repo, tag, _digest(row[0]) if row else record.digest)
            moving = [tag for tag in tag_names if tag not in set(fixed)]
            if moving:
                conn.execute(
                    "INSERT INTO tags (repo, tag, digest, updated_at) "
                    "SELECT %s, tag, %s, %s FROM unnest(%s::text[]) AS tag ORDER BY tag "
                    "ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest, "
                    "updated_at = excluded.updated_at",
                    (repo, values[1], now, moving),
                )

        self._write(write)

    def get_manifest(self, repository: str, digest: Digest) -> ManifestRecord | None:
        """A manifest of ``repository`` by digest."""
        rows = self._read(_RESOLVE_DIGEST, (repository, str(digest)))
        return _record(rows[0]) if rows else None

    def resolve(self, repository: str, reference: str) -> ManifestRecord | None:
        """A manifest by tag or by digest string (anything with a ``:``), in one query."""
        sql = _RESOLVE_DIGEST if ":" in reference else _RESOLVE_TAG
        rows = self._read(sql, (repository, reference))
        return _record(rows[0]) if rows else None

    def delete_manifest(self, repository: str, digest: Digest, *,
                        protected: Callable[[str], bool] | None = None) -> bool:
        """Remove a manifest and (by the cascading key) every tag pointing at it. With
        ``protected``, the manifest's row is locked first (a concurrent ``put_manifest``
        of it holds that lock until it commits), then its tags are read: one that
        ``protected`` names is ``TagProtected``."""
        if _has_nul([repository, digest]):
            return False
        key = (repository, str(digest))

        def write(conn: psycopg.Connection) -> bool:
            if protected is not None:
                conn.execute("SELECT 1 FROM manifests WHERE repo = %s AND digest = %s "
                             "FOR UPDATE", key)
                for (tag,) in conn.execute("SELECT tag FROM tags WHERE repo = %s AND "
                                           "digest = %s ORDER BY tag", key).fetchall():
                    if protected(tag):
                        raise TagProtected(repository, tag, digest)
            return conn.execute("DELETE FROM manifests WHERE repo = %s AND digest = %s",
                                key).rowcount > 0

        return self._write(write)

    def manifests(self, repository: str) -> Iterator[ManifestRecord]:
        """Every manifest of ``repository``, sorted by digest (read in one statement)."""
        rows = self._read(f"SELECT {_MANIFEST_COLUMNS} FROM manifests AS m "
                          "WHERE m.repo = %s ORDER BY m.digest", (repository,))
        return iter([_record(row) for row in rows])

    # Tags.

    def tags(self, repository: str, last: str | None = None,
             n: int | None = None) -> list[str]:
        """Tag names of ``repository``, sorted, after ``last``, at most ``n``."""
        rows = self._read(
            "SELECT tag FROM tags WHERE repo = %(r)s "
            "AND (%(last)s::text IS NULL OR tag > %(last)s) ORDER BY tag LIMIT %(n)s",
            {"r": repository, "last": None if last is None else _text(last, "last"),
             "n": _limit(n)},
        )
        return [tag for (tag,) in rows]

    def tagged(self, repository: str) -> dict[str, Digest]:
        """Every tag of ``repository`` with the digest it points at."""
        rows = self._read("SELECT tag, digest FROM tags WHERE repo = %s ORDER BY tag",
                          (repository,))
        return {tag: _digest(digest) for tag, digest in rows}

    def delete_tag(self, repository: str, tag: str) -> bool:
        """Remove one tag; whether it existed."""
        if _has_nul([repository, tag]):
            return False
        return self._write(lambda conn: conn.execute(
            "DELETE FROM tags WHERE repo = %s AND tag = %s", (repository, tag)).rowcount > 0)

    def referrers(self, repository: str, subject: Digest,
                  artifact_type: str | None = None) -> list[ManifestRecord]:
        """Manifests of ``repository`` whose ``subject`` is ``subject`` (optionally only of
        one artifact type), sorted by digest."""
        rows = self._read(
            f"SELECT {_MANIFEST_COLUMNS} FROM manifests AS m "
            "WHERE m.repo = %(r)s AND m.subject = %(s)s "
            "AND (%(t)s::text IS NULL OR m.artifact_type = %(t)s) ORDER BY m.digest",
            {"r": repository, "s": str(subject), "t": artifact_type},
        )
        return [_record(row) for row in rows]

    # Uploads.

    def start_upload(self, record: UploadRecord) -> None:
        """Record a new upload session; ``AlreadyExists`` if its uuid is taken."""
        if not isinstance(record, UploadRecord):
            raise InvalidArgument(f"record must be an UploadRecord, not {type(record).__name__}")
        repo = _text(record.repository, "repository")
        values = (_text(record.uuid, "upload uuid"), repo, float(record.started_at),
                  _mapping(record.labels, "upload labels") or Jsonb({}))

        def write(conn: psycopg.Connection) -> int:
            self._ensure_repository(conn, repo, time.time())
            return conn.execute(
                "INSERT INTO uploads (uuid, repo, started_at, labels) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (uuid) DO NOTHING", values).rowcount

        if self._write(write) == 0:
            raise AlreadyExists(f"upload {record.uuid!r} already exists")

    def get_upload(self, uuid: str) -> UploadRecord | None:
        """An open upload session."""
        rows = self._read("SELECT uuid, repo, started_at, labels FROM uploads "
                          "WHERE uuid = %s", (uuid,))
        return _upload(rows[0]) if rows else None

    def update_upload(self, uuid: str, labels: Mapping[str, str]) -> bool:
        """Replace the labels of an open upload session; whether it exists."""
        if _has_nul([uuid]):
            return False
        value = _mapping(labels, "upload labels") or Jsonb({})
        return self._write(lambda conn: conn.execute(
            "UPDATE uploads SET labels = %s WHERE uuid = %s", (value, uuid)).rowcount > 0)

    def end_upload(self, uuid: str) -> bool:
        """Forget an upload session; whether it existed."""
        if _has_nul([uuid]):
            return False
        return self._write(lambda conn: conn.execute(
            "DELETE FROM uploads WHERE uuid = %s", (uuid,)).rowcount > 0)

    def uploads(self, started_before: float | None = None) -> list[UploadRecord]:
        """Open upload sessions (optionally only those started before a time), oldest
        first."""
        rows = self._read(
            "SELECT uuid, repo, started_at, labels FROM uploads "
            "WHERE (%(b)s::float8 IS NULL OR started_at < %(b)s) ORDER BY started_at, uuid",
            {"b": None if started_before is None else float(started_before)},
        )
        return [_upload(row) for row in rows]

    # Maintenance.

    def close(self) -> None:
        """Close the pool; using the store afterwards is an error."""
        with self._guard:
            self._closed = True
            pool = self._pool if self._pid == os.getpid() else None
        if pool is not None:
            pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled autocommit connection, for collaborators that keep their own tables in
        the same database (advisory locks, users); its failures are ``MetadataUnavailable``."""
        try:
            with self._pooled() as conn:
                yield conn
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as err:
            self._sweep(err)
            raise self._unavailable(err) from err

    # Internals.

    def _direct(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self._url, autocommit=True,
                                   connect_timeout=max(1, round(self._connect_timeout)),
                                   application_name="registry")
        except psycopg.Error as err:
            raise self._unavailable(err) from None

    def _open_pool(self) -> psycopg_pool.ConnectionPool:
        return psycopg_pool.ConnectionPool(
            self._url, min_size=self._sizes[0], max_size=self._sizes[1], open=True,
            timeout=self._timeout, name="registry-metadata",
            check=psycopg_pool.ConnectionPool.check_connection if self._check else None,
            kwargs={"autocommit": True, "application_name": "registry",
                    "connect_timeout": max(1, round(self._connect_timeout)),
                    "options": self._options()},
        )

    def _options(self) -> str:
        """The URL's own ``options`` (a ``search_path``, say) plus the statement timeout."""
        given = str(conninfo_to_dict(self._url).get("options") or "")
        return f"{given} -c statement_timeout={int(self._timeout * 1000)}".strip()

    def _current_pool(self) -> psycopg_pool.ConnectionPool:
        if self._closed:
            raise FailedPrecondition(f"{self!r} is closed")
        if self._pid != os.getpid():
            with self._guard:
                if self._pid != os.getpid():
                    # Inherited across fork: its sockets belong to the parent; never use or
                    # close them here.
                    self._inherited.append(self._pool)
                    self._pool = self._open_pool()
                    self._pid = os.getpid()
        return self._pool

    @contextmanager
    def _pooled(self) -> Iterator[psycopg.Connection]:
        """A pooled connection. While the database is failing, wait only briefly for one, so
        that requests answer 503 at once instead of queueing; if none comes, probe the
        database directly: still down raises with the probe's cause, back up replaces the
        pool (whose reconnection attempts may be backing off for a long time)."""
        failing = time.monotonic() - self._failed_at < _FAILING_FOR
        pool = self._current_pool()
        try:
            conn_cm = pool.connection(
                timeout=_FAILING_WAIT if failing else min(self._timeout, _POOL_WAIT))
            conn = conn_cm.__enter__()
        except psycopg_pool.PoolTimeout:
            if not failing:
                raise
            self._probe()
            self._replace_pool(pool)
            conn_cm = self._current_pool().connection(timeout=_FAILING_WAIT)
            conn = conn_cm.__enter__()
        try:
            yield conn
        except BaseException as exc:
            if not conn_cm.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            conn_cm.__exit__(None, None, None)
            self._failed_at = 0.0

    def _probe(self) -> None:
        """Connect once outside the pool; ``MetadataUnavailable`` with the cause if that
        fails."""
        self._failed_at = time.monotonic()
        try:
            psycopg.connect(self._url, connect_timeout=max(1, round(_FAILING_WAIT))).close()
        except psycopg.Error as err:
            raise self._unavailable(err) from None

    def _replace_pool(self, failed: psycopg_pool.ConnectionPool) -> None:
        with self._guard:
            if self._pool is not failed or self._closed:
                return
            self._pool = self._open_pool()
        failed.close(timeout=0)

    def _sweep(self, err: BaseException) -> None:
        """After a connection broke, test every idle pooled one and replace the broken: a
        database restart breaks them all at once, and each would otherwise fail one request."""
        if not isinstance(err, psycopg.OperationalError) or isinstance(
                err, pg_errors.QueryCanceled):
            return
        with suppress(psycopg.Error, psycopg_pool.PoolTimeout, FailedPrecondition):
            self._current_pool().check()

    def _unavailable(self, err: BaseException) -> MetadataUnavailable:
        if not isinstance(err, pg_errors.QueryCanceled):
            self._failed_at = time.monotonic()
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return MetadataUnavailable(f"metadata_url {redact(self._url)}: {cause}")

    def _read(self, sql: str, args: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        """Every row one read statement gives (retried once on a broken connection)."""
        if _has_nul(args):
            return []
        for attempt in (0, 1):
            try:
                with self._pooled() as conn:
                    return conn.execute(sql, args).fetchall()
            except psycopg.OperationalError as err:
                if attempt == 0 and not isinstance(err, pg_errors.QueryCanceled):
                    self._failed_at = time.monotonic()
                    self._sweep(err)
                    continue
                raise self._unavailable(err) from err
            except psycopg_pool.PoolTimeout as err:
                raise self._unavailable(err) from err
        raise AssertionError("unreachable")

    def _write(self, body: Callable[[psycopg.Connection], T]) -> T:
        """Run ``body`` in one transaction, retried when it loses a deadlock or a
        serialization conflict."""
        for attempt in range(_RETRIES):
            try:
                with self._pooled() as conn, conn.transaction():
                    return body(conn)
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as err:
                if attempt == _RETRIES - 1:
                    raise self._unavailable(err) from err
                time.sleep(0.01 * (attempt + 1))
            except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as err:
                self._sweep(err)
                raise self._unavailable(err) from err
        raise AssertionError("unreachable")

    @staticmethod
    def _ensure_repository(conn: psycopg.Connection, repo: str, now: float) -> None:
        conn.execute("INSERT INTO repositories (name, created_at) VALUES (%s, %s) "
                     "ON CONFLICT (name) DO NOTHING", (repo, now))
