"""The metadata-store conformance suite on PostgresMetadataStore against a real PostgreSQL
(started once per session by :mod:`registry.testing.engines`), plus what is particular to
PostgreSQL: migrations, hot queries on keys, an unreachable server, a failure inside a
transaction, a forked child."""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from layerstore.errors import FailedPrecondition, InvalidArgument
from registry.metadata import migrate
from registry.metadata.postgres import HOT_QUERIES, PostgresMetadataStore, redact
from registry.metadata.store import MetadataStore, MetadataUnavailable, UploadRecord
from registry.testing.deadline import time_limit
from registry.testing.engines import PostgresEngine, recorded
from registry.testing.metadata_suite import REPO, MetadataStoreSuite, blob, manifest
from registry.testing.processes import free_port
from tests.registry.pg import ENGINE_ENV

TIMEOUT = 300
_stores: list[PostgresMetadataStore] = []


@pytest.fixture(autouse=True)
def deadline(postgres: PostgresEngine) -> Iterator[None]:
    """Fail a case that runs longer than TIMEOUT seconds; close the stores it opened."""
    try:
        with time_limit(TIMEOUT):
            yield
    finally:
        while _stores:
            _stores.pop().close()


def _engine() -> PostgresEngine:
    engines = recorded(Path(os.environ[ENGINE_ENV]))
    assert engines is not None and engines.postgres is not None
    return engines.postgres


def _name(tmp_path: Path) -> str:
    return "t_" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:24]


def database_url(tmp_path: Path) -> str:
    """The store of one test case: a schema of its own in the shared ``suite`` database,
    chosen by the URL's ``search_path`` (made on first use; the same for every process)."""
    base = _engine().create_database("suite")
    with psycopg.connect(base, autocommit=True) as conn, \
            contextlib.suppress(psycopg.errors.UniqueViolation,
                                psycopg.errors.DuplicateSchema):
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
            sql.Identifier(_name(tmp_path))))
    return f"{base}?options=-csearch_path%3D{_name(tmp_path)}"


def own_database_url(tmp_path: Path) -> str:
    """A database of the test case's own (for cases that cut a whole database off)."""
    return _engine().create_database(_name(tmp_path))


def open_store(tmp_path: Path, url: str | None = None, **kwargs: object
               ) -> PostgresMetadataStore:
    store = PostgresMetadataStore(url or database_url(tmp_path), **kwargs)  # type: ignore[arg-type]
    _stores.append(store)
    return store


class TestPostgresMetadataStore(MetadataStoreSuite):
    """The conformance suite."""

    def make_store(self, tmp_path: Path) -> MetadataStore:
        return open_store(tmp_path)


def test_update_upload_replaces_labels(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.start_upload(UploadRecord("u-1", REPO, 5.0, {"old": "1"}))
    state = {"upload_id": "2~abc", "parts": '[[1,"\\"e1\\"",5242880]]', "offset": "7"}
    assert store.update_upload("u-1", state)
    assert store.get_upload("u-1") == UploadRecord("u-1", REPO, 5.0, state)
    assert store.update_upload("u-1", {})
    assert store.get_upload("u-1") == UploadRecord("u-1", REPO, 5.0, {})
    assert not store.update_upload("never", {"x": "y"})
    store.end_upload("u-1")
    assert not store.update_upload("u-1", state)


def test_migrations_are_recorded_and_idempotent(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    assert store.schema_version == migrate.latest_version() >= 1
    with psycopg.connect(database_url(tmp_path), autocommit=True) as conn:
        assert migrate.migrate(conn) == []
        rows = conn.execute("SELECT version, name FROM schema_version ORDER BY version")
        assert [(m.version, m.name) for m in migrate.migrations()] == rows.fetchall()
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
        assert {"schema_version", "repositories", "blob_links", "manifests", "tags",
                "uploads"} <= tables
        conn.execute("INSERT INTO schema_version (version, name) VALUES (99, 'future')")
    with pytest.raises(FailedPrecondition, match="schema version 99"):
        PostgresMetadataStore(database_url(tmp_path))


def test_without_migrate_an_empty_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="registry migrate"):
        PostgresMetadataStore(database_url(tmp_path), migrate=False)
    open_store(tmp_path)
    assert open_store(tmp_path, migrate=False).repositories() == []


def _open_and_close(url: str) -> int:
    store = PostgresMetadataStore(url)
    store.close()
    return migrate.latest_version()


def test_replicas_migrating_at_once_apply_each_migration_once(tmp_path: Path) -> None:
    url = database_url(tmp_path)
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert pool.map(_open_and_close, [url] * 4) == [migrate.latest_version()] * 4
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (
            len(migrate.migrations()),)


@pytest.mark.parametrize("name", sorted(HOT_QUERIES))
def test_hot_queries_use_keys(tmp_path: Path, name: str) -> None:
    store = open_store(tmp_path)
    store.put_manifest(REPO, manifest("m"), ("v1",))
    with psycopg.connect(database_url(tmp_path)) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(row[0] for row in conn.execute(
            "EXPLAIN " + HOT_QUERIES[name], ("repo", "key")))
    assert "Seq Scan" not in plan, plan
    assert "_pkey" in plan, plan


def test_unreachable_server_names_the_setting_and_cause(tmp_path: Path) -> None:
    url = f"postgresql://registry:secret@127.0.0.1:{free_port()}/registry"
    with pytest.raises(MetadataUnavailable) as caught:
        PostgresMetadataStore(url, connect_timeout=2)
    message = str(caught.value)
    assert message.startswith("metadata_url postgresql://registry:***@127.0.0.1:")
    assert "secret" not in message and "refused" in message
    assert "\n" not in message


def test_redact() -> None:
    assert redact("postgresql://u:p@h:1/d") == "postgresql://u:***@h:1/d"
    assert redact("postgresql://h/d") == "postgresql://h/d"


def test_server_gone_at_run_time_is_unavailable(tmp_path: Path,
                                                postgres: PostgresEngine) -> None:
    store = open_store(tmp_path, own_database_url(tmp_path))
    store.link_blob(REPO, blob("a"), 1)
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        # Kill every session of the database, then forbid new ones.
        name = _name(tmp_path)
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s", (name,))
        try:
            with pytest.raises(MetadataUnavailable, match="metadata_url"):
                store.blob_size(REPO, blob("a"))
            with pytest.raises(MetadataUnavailable, match="metadata_url"):
                store.link_blob(REPO, blob("b"), 2)
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert store.blob_size(REPO, blob("a")) == 1


def test_every_pooled_connection_broken_at_once_costs_no_read(tmp_path: Path,
                                                              postgres: PostgresEngine) -> None:
    """A database restart breaks every idle pooled connection; the first read after it
    tests them all and succeeds, and so does every read after it."""
    store = open_store(tmp_path, own_database_url(tmp_path), min_size=6, max_size=6)
    store.link_blob(REPO, blob("a"), 1)
    with store.connection() as c1, store.connection() as c2, store.connection() as c3, \
            store.connection() as c4, store.connection() as c5, store.connection() as c6:
        assert len({id(c) for c in (c1, c2, c3, c4, c5, c6)}) == 6
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE datname = %s", (_name(tmp_path),)).fetchone()
    assert killed is not None and killed[0] >= 6
    for _ in range(12):
        assert store.blob_size(REPO, blob("a")) == 1


def test_failure_inside_the_transaction_rolls_back(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    kept = manifest("kept")
    store.put_manifest(REPO, kept, ("a",))
    with psycopg.connect(database_url(tmp_path), autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.tag = 'boom' THEN RAISE EXCEPTION 'injected failure'; END IF; "
            "RETURN NEW; END $$")
        conn.execute("CREATE TRIGGER boom BEFORE INSERT ON tags FOR EACH ROW "
                     "EXECUTE FUNCTION boom()")
    with pytest.raises(psycopg.errors.RaiseException, match="injected failure"):
        store.put_manifest("fresh", manifest("new"), ("first", "boom"))
    with pytest.raises(psycopg.errors.RaiseException, match="injected failure"):
        store.put_manifest(REPO, manifest("kept", annotations={"k": "v"}), ("b", "boom"))
    assert store.repositories() == [REPO]
    assert store.get_manifest("fresh", manifest("new").digest) is None
    assert store.get_manifest(REPO, kept.digest) == kept
    assert store.tagged(REPO) == {"a": kept.digest}
    store.put_manifest(REPO, manifest("after"), ("c",))
    assert store.tags(REPO) == ["a", "c"]


def test_bad_values_are_refused(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    with pytest.raises(InvalidArgument, match="Digest"):
        store.link_blob(REPO, str(blob("a")), 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="size"):
        store.link_blob(REPO, blob("a"), -1)
    with pytest.raises(InvalidArgument, match="string"):
        store.put_manifest(REPO, manifest("m"), "latest")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="repository"):
        store.put_manifest(b"repo", manifest("m"))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="NUL"):
        store.put_manifest(REPO, manifest("m", annotations={"k": "a\x00b"}))
    with pytest.raises(InvalidArgument, match="n must be"):
        store.tags(REPO, n=-1)
    with pytest.raises(InvalidArgument, match="postgresql://"):
        PostgresMetadataStore("sqlite:///x")
    assert store.repositories() == []
    assert store.linked_blobs() == set()


def test_keys_with_nul_match_nothing(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.put_manifest(REPO, manifest("m"), ("v1",))
    assert store.resolve(REPO, "\x00") is None
    assert store.resolve("a\x00b", "v1") is None
    with pytest.raises(InvalidArgument, match="NUL"):
        store.tags(REPO, last="\x00")
    assert store.get_upload("\x00") is None
    assert not store.delete_tag(REPO, "v\x001")
    assert not store.end_upload("\x00")
    assert store.tags(REPO) == ["v1"]


def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.link_blob(REPO, blob("a"), 1)
    store.close()
    with pytest.raises(FailedPrecondition, match="closed"):
        store.blob_size(REPO, blob("a"))
    assert open_store(tmp_path).blob_size(REPO, blob("a")) == 1


def _use_in_forked_child(store: PostgresMetadataStore) -> None:
    store.link_blob("forked", blob("child"), 2)
    assert store.resolve(REPO, "v1") == manifest("m")


def test_forked_child_opens_its_own_pool(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.put_manifest(REPO, manifest("m"), ("v1",))
    child = multiprocessing.get_context("fork").Process(target=_use_in_forked_child,
                                                        args=(store,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert store.blob_size("forked", blob("child")) == 2
    store.put_manifest(REPO, manifest("after"), ("v2",))
    assert store.tags(REPO) == ["v1", "v2"]
