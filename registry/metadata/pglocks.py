"""Cluster-wide locks in the PostgreSQL metadata database, for work that exactly one of
many replicas may do at a time (garbage collection).

They are session-level advisory locks held on one pooled connection of the store: if the
holder dies or its connection breaks, PostgreSQL releases the lock by itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from layerstore.errors import Unavailable
from registry.metadata.store import MetadataStore

GC_LOCK = 0x7079_6763_6C6B  # pg_advisory_lock key of the garbage collector
SWEEP_LOCK = 0x7079_7377_6570  # held shared by pushes, exclusive by a sweep


class LockHeld(Unavailable):
    """Another process holds the lock; the message names it."""


@contextmanager
def single_collector(store: MetadataStore) -> Iterator[None]:
    """Hold the garbage collector's lock of ``store``'s database for the block, or raise
    :class:`LockHeld` at once if another collector holds it. A store without a shared
    database (SQLite) needs no such lock: the block just runs."""
    from registry.metadata.postgres import PostgresMetadataStore

    if not isinstance(store, PostgresMetadataStore):
        yield
        return
    with store.connection() as conn:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (GC_LOCK,)).fetchone()
        if not row or not row[0]:
            raise LockHeld(f"another garbage collection is running on metadata_url "
                           f"{store.url} (it holds advisory lock {GC_LOCK})")
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (GC_LOCK,))


class AdvisorySweepLock:
    """The GC lock of :mod:`registry.locking` across hosts: a session-level advisory lock,
    shared by pushes between "the blob exists" and "it is linked", exclusive by a sweep.
    Waiting for it is bounded by the store's statement timeout (then
    ``MetadataUnavailable``)."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    @contextmanager
    def _held(self, kind: str) -> Iterator[None]:
        from registry.metadata.postgres import PostgresMetadataStore

        assert isinstance(self.store, PostgresMetadataStore)
        with self.store.connection() as conn:
            conn.execute(f"SELECT pg_advisory_lock{kind}(%s)", (SWEEP_LOCK,))
            try:
                yield
            finally:
                conn.execute(f"SELECT pg_advisory_unlock{kind}(%s)", (SWEEP_LOCK,))

    def shared(self) -> AbstractContextManager[None]:
        """Hold it shared (a push)."""
        return self._held("_shared")

    def exclusive(self) -> AbstractContextManager[None]:
        """Hold it exclusive (a sweep)."""
        return self._held("")


def cluster_lock_for(store: MetadataStore) -> AdvisorySweepLock | None:
    """The cross-host GC lock of ``store``'s database; ``None`` for a local store."""
    from registry.metadata.postgres import PostgresMetadataStore

    return AdvisorySweepLock(store) if isinstance(store, PostgresMetadataStore) else None
