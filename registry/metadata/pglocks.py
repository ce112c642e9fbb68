"""Cluster-wide locks in the PostgreSQL metadata database, for work that exactly one of
many replicas may do at a time (garbage collection).

They are session-level advisory locks held on one pooled connection of the store: if the
holder dies or its connection breaks, PostgreSQL releases the lock by itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from layerstore.errors import Unavailable
from registry.metadata.store import MetadataStore

GC_LOCK = 0x7079_6763_6C6B  # pg_advisory_lock key of the garbage collector


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
