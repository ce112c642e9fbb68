"""The two reads every pull repeats — a manifest's head by tag or digest, a blob's size —
answered without blocking the server's event loop.

:class:`ManifestHead` is what a manifest GET or HEAD needs to answer (digest, media type,
size): the bytes come from the content cache by digest. :class:`HotReads` is the seam;
:func:`hot_reads` picks the implementation for a metadata store:

- :class:`PostgresReads`: one statement per lookup on asyncio connections of their own
  (``psycopg.AsyncConnection``, autocommit, the same statement timeout as the store), so
  that a process keeps many lookups in flight at once instead of waiting on each round
  trip. Nothing read is cached: a tag moved by any replica is seen by the next request.
- :class:`StoreReads`: any other store (SQLite, a local file), through its own methods as
  before: inline for a manifest, in a worker thread for a blob.

A connection that fails is dropped; a lookup that failed on a kept connection is tried
once more on a new one. The database unreachable, or every connection busy for longer than
the wait, is :class:`~registry.metadata.store.MetadataUnavailable` (the server's 503).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

from layerstore.digest import Digest
from registry.metadata.store import MetadataStore, MetadataUnavailable, visible_size
from registry.metadata.values import parse_digest as _digest

__all__ = ["STATEMENTS", "HotReads", "ManifestHead", "PostgresReads", "StoreReads", "hot_reads"]

_MANIFEST_BY_DIGEST = (
    "SELECT digest, media_type, size FROM manifests WHERE repo = %s AND digest = %s"
)
_MANIFEST_BY_TAG = (
    "SELECT m.digest, m.media_type, m.size FROM tags AS t "
    "JOIN manifests AS m ON m.repo = t.repo AND m.digest = t.digest "
    "WHERE t.repo = %s AND t.tag = %s"
)
# A linked blob's size, else the size of a manifest of that digest (a blob HEAD on a
# manifest digest), in one statement: the first branch is read first.
_BLOB_SIZE = (
    "SELECT size FROM blob_links WHERE repo = %(r)s AND digest = %(d)s "
    "UNION ALL SELECT size FROM manifests WHERE repo = %(r)s AND digest = %(d)s LIMIT 1"
)

STATEMENTS: Mapping[str, str] = {
    "manifest_by_digest": _MANIFEST_BY_DIGEST,
    "manifest_by_tag": _MANIFEST_BY_TAG,
    "blob_size": _BLOB_SIZE,
}
"""Every statement :class:`PostgresReads` runs, one per lookup."""


@dataclass(frozen=True, slots=True)
class ManifestHead:
    """What answering a manifest GET or HEAD needs of its metadata."""

    digest: Digest
    media_type: str
    size: int


class HotReads(Protocol):
    """The lookups on the pull path, awaited on the event loop."""

    async def manifest_head(self, repository: str, reference: str) -> ManifestHead | None:
        """A manifest of ``repository`` by tag or by digest string (anything with a ``:``);
        ``None`` if there is none."""
        ...

    async def blob_size(self, repository: str, digest: Digest) -> int | None:
        """The size of ``digest`` as ``repository`` sees it (a linked blob, else one of its
        manifests), or ``None``."""
        ...

    async def close(self) -> None:
        """Release the connections of the running event loop."""
        ...


def _has_nul(*values: str) -> bool:
    """PostgreSQL text cannot hold NUL, so no key with one matches anything."""
    return any("\x00" in v for v in values)


class StoreReads:
    """:class:`HotReads` through a :class:`MetadataStore`'s own methods."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    async def manifest_head(self, repository: str, reference: str) -> ManifestHead | None:
        """See :class:`HotReads` (one local lookup, inline)."""
        record = self.store.resolve(repository, reference)
        if record is None:
            return None
        return ManifestHead(record.digest, record.media_type, record.size)

    async def blob_size(self, repository: str, digest: Digest) -> int | None:
        """See :class:`HotReads` (in a worker thread)."""
        return await asyncio.get_running_loop().run_in_executor(
            None, self._blob_size, repository, digest)

    def _blob_size(self, repository: str, digest: Digest) -> int | None:
        return visible_size(self.store, repository, digest)

    async def close(self) -> None:
        """Nothing of its own to release (the store is closed by its owner)."""


class PostgresReads:
    """:class:`HotReads` on up to ``max_size`` asyncio connections to the database at
    ``url`` (see the module docstring). Connections belong to the event loop that made them;
    a process (a uvicorn worker) makes its own on first use."""

    def __init__(self, url: str, *, max_size: int = 8, timeout: float = 30.0,
                 connect_timeout: float = 10.0, wait: float = 5.0) -> None:
        self._url = url
        self._max = max_size
        self._wait = wait
        given = str(conninfo_to_dict(url).get("options") or "")
        self._kwargs: dict[str, Any] = {
            "autocommit": True, "application_name": "registry",
            "connect_timeout": max(1, round(connect_timeout)),
            "options": f"{given} -c statement_timeout={int(timeout * 1000)}".strip(),
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[psycopg.AsyncCursor[Any]] = []
        self._slots = asyncio.Semaphore(max_size)

    async def manifest_head(self, repository: str, reference: str) -> ManifestHead | None:
        """See :class:`HotReads`: one statement."""
        if _has_nul(repository, reference):
            return None
        sql = _MANIFEST_BY_DIGEST if ":" in reference else _MANIFEST_BY_TAG
        row = await self._one(sql, (repository, reference))
        if row is None:
            return None
        return ManifestHead(_digest(row[0]), row[1], row[2])

    async def blob_size(self, repository: str, digest: Digest) -> int | None:
        """See :class:`HotReads`: one statement."""
        key = str(digest)
        if _has_nul(repository, key):
            return None
        row = await self._one(_BLOB_SIZE, {"r": repository, "d": key})
        return None if row is None else int(row[0])

    async def close(self) -> None:
        """Close the idle connections (those in use close when their lookup ends)."""
        idle, self._idle = self._idle, []
        for cursor in idle:
            await _discard(cursor)

    async def _one(self, sql: str, args: Sequence[Any] | dict[str, Any]
                   ) -> tuple[Any, ...] | None:
        self._bind_loop()
        try:
            if self._slots.locked():
                async with asyncio.timeout(self._wait):
                    await self._slots.acquire()
            else:
                await self._slots.acquire()
        except TimeoutError:
            raise MetadataUnavailable(
                f"metadata_url {self._redacted()}: no database connection free within "
                f"{self._wait:g} s") from None
        try:
            for attempt in (0, 1):
                fresh = not self._idle
                cursor = self._idle.pop() if self._idle else await self._connect()
                try:
                    await cursor.execute(sql, args)
                    row = await cursor.fetchone()
                except psycopg.OperationalError as err:
                    await _discard(cursor)
                    if attempt == 0 and not fresh and not isinstance(
                            err, pg_errors.QueryCanceled):
                        continue
                    raise self._unavailable(err) from err
                except BaseException:
                    await _discard(cursor)
                    raise
                self._idle.append(cursor)
                return row
        finally:
            self._slots.release()
        raise AssertionError("unreachable")

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Connections of another loop (a forked worker, a test's earlier loop) cannot
            # be used or closed from this one: leave them to the garbage collector.
            self._loop, self._idle = loop, []
            self._slots = asyncio.Semaphore(self._max)

    async def _connect(self) -> psycopg.AsyncCursor[Any]:
        """A new connection's cursor (kept with it and used for every lookup on it)."""
        try:
            conn = await psycopg.AsyncConnection.connect(self._url, **self._kwargs)
        except psycopg.Error as err:
            raise self._unavailable(err) from None
        return conn.cursor()

    def _redacted(self) -> str:
        from registry.metadata.postgres import redact

        return redact(self._url)

    def _unavailable(self, err: BaseException) -> MetadataUnavailable:
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return MetadataUnavailable(f"metadata_url {self._redacted()}: {cause}")


async def _discard(cursor: psycopg.AsyncCursor[Any]) -> None:
    with contextlib.suppress(psycopg.Error):
        await cursor.connection.close()


def hot_reads(store: MetadataStore, metadata_url: str = "") -> HotReads:
    """The :class:`HotReads` for ``store``: :class:`PostgresReads` on ``metadata_url`` when
    the store is PostgreSQL, else :class:`StoreReads`."""
    if metadata_url:
        return PostgresReads(metadata_url)
    return StoreReads(store)

