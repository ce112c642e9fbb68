"""The pull path's lookups (registry.metadata.reads): PostgresReads against a real
PostgreSQL and StoreReads on SQLite give the same answers; nothing is cached (a tag moved
through another store is seen at once); each statement reads by key; a lost database is
MetadataUnavailable and service resumes when it is back."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from registry.metadata.reads import STATEMENTS, HotReads, ManifestHead, PostgresReads, StoreReads
from registry.metadata.sqlite import SqliteMetadataStore
from registry.metadata.store import MetadataStore, MetadataUnavailable
from registry.testing.engines import PostgresEngine
from registry.testing.metadata_suite import REPO, blob, manifest
from tests.registry.test_metadata_postgres import (
    _name,
    database_url,
    deadline,
    open_store,
    own_database_url,
)

__all__ = ["deadline"]  # the autouse per-test deadline of the PostgreSQL suite


@pytest.fixture(params=["postgres", "sqlite"])
def pair(request: pytest.FixtureRequest, tmp_path: Path
         ) -> Iterator[tuple[MetadataStore, HotReads]]:
    """A store to write through and the lookups to read with (of another connection)."""
    if request.param == "postgres":
        url = database_url(tmp_path)
        yield open_store(tmp_path, url), PostgresReads(url)
        return
    store = SqliteMetadataStore(tmp_path / "metadata.db")
    try:
        yield store, StoreReads(SqliteMetadataStore(tmp_path / "metadata.db"))
    finally:
        store.close()


def test_manifest_heads_and_a_moved_tag(pair: tuple[MetadataStore, HotReads]) -> None:
    store, reads = pair
    first, second = manifest("first"), manifest("second")
    store.put_manifest(REPO, first, ("v1",))
    store.put_manifest(REPO, second)

    async def check() -> None:
        want = ManifestHead(first.digest, first.media_type, first.size)
        assert await reads.manifest_head(REPO, "v1") == want
        assert await reads.manifest_head(REPO, str(first.digest)) == want
        assert await reads.manifest_head(REPO, "v2") is None
        assert await reads.manifest_head("other/repo", "v1") is None
        assert await reads.manifest_head(REPO, "v1\x00") is None
        store.put_manifest(REPO, second, ("v1",))
        assert await reads.manifest_head(REPO, "v1") == ManifestHead(
            second.digest, second.media_type, second.size)
        assert store.delete_tag(REPO, "v1")
        assert await reads.manifest_head(REPO, "v1") is None
        await reads.close()

    asyncio.run(check())


def test_blob_sizes(pair: tuple[MetadataStore, HotReads]) -> None:
    store, reads = pair
    record = manifest("m")
    store.link_blob(REPO, blob("layer"), 1234)
    store.put_manifest(REPO, record)

    async def check() -> None:
        assert await reads.blob_size(REPO, blob("layer")) == 1234
        assert await reads.blob_size(REPO, record.digest) == record.size
        assert await reads.blob_size(REPO, blob("missing")) is None
        assert await reads.blob_size("other/repo", blob("layer")) is None
        store.unlink_blob(REPO, blob("layer"))
        assert await reads.blob_size(REPO, blob("layer")) is None
        await reads.close()

    asyncio.run(check())


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_statements_read_by_key(tmp_path: Path, name: str) -> None:
    open_store(tmp_path).put_manifest(REPO, manifest("m"), ("v1",))
    params: tuple[str, ...] | dict[str, str] = ("repo", "key")
    if "%(r)s" in STATEMENTS[name]:
        params = {"r": "repo", "d": "key"}
    with psycopg.connect(database_url(tmp_path)) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + STATEMENTS[name],
                                                        params))
    assert "Seq Scan" not in plan, plan
    assert "_pkey" in plan, plan


def test_lost_database_is_unavailable_then_back(tmp_path: Path,
                                                postgres: PostgresEngine) -> None:
    url = own_database_url(tmp_path)
    store = open_store(tmp_path, url)
    store.link_blob(REPO, blob("a"), 7)
    reads = PostgresReads(url)
    name = _name(tmp_path)

    async def check() -> None:
        assert await reads.blob_size(REPO, blob("a")) == 7
        with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s", (name,))
            try:
                with pytest.raises(MetadataUnavailable) as caught:
                    await reads.blob_size(REPO, blob("a"))
                message = str(caught.value)
                assert message.startswith("metadata_url postgresql://")
                assert "***" in message and "\n" not in message
            finally:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert await reads.blob_size(REPO, blob("a")) == 7
        await reads.close()

    asyncio.run(check())
