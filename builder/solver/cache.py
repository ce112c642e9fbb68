"""The build cache: a step's cache key → the filesystem and layer it produced.

A record names the committed snapshot (by chainID) the step left, the layer it added (None
when it changed nothing) and the history timestamp it was first built with, so a fully
cached rebuild gives the same image. Records live in sqlite (opened by
:mod:`layerstore.sqlitedb`; one row per key), which
several builds on one store may read and write at the same time.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerstore.digest import Digest
from layerstore.layerblob import Layer
from layerstore.oci import Descriptor
from layerstore.sqlitedb import Schema, open_database

# Version 1 is the schema written before versions were recorded, hence IF NOT EXISTS.
SCHEMA = Schema(
    what="build cache",
    version=1,
    create=(
        "CREATE TABLE IF NOT EXISTS steps (key TEXT PRIMARY KEY, chain TEXT, layer TEXT,"
        " diff_id TEXT, created TEXT NOT NULL, size INTEGER NOT NULL DEFAULT 0,"
        " made REAL NOT NULL, used REAL NOT NULL)",
    ),
)


def cache_key(parent: str, material: dict[str, Any]) -> str:
    """The key of a step: its parent's key and everything that decides its result."""
    text = json.dumps({"parent": parent, **material}, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class CacheRecord:
    """What a cached step produced."""

    key: str
    chain: str | None
    layer: Layer | None
    created: str
    size: int = 0


class BuildCache:
    """Cache records in ``<store root>/cache.db``."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the cache database at ``path``."""
        self._db = open_database(path, SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def get(self, key: str) -> CacheRecord | None:
        """The record of ``key`` (marking it used now), or None."""
        row = self._db.execute("SELECT key, chain, layer, diff_id, created, size FROM steps "
                               "WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        self._db.execute("UPDATE steps SET used = ? WHERE key = ?", (time.time(), key))
        return _record(row)

    def put(self, record: CacheRecord) -> None:
        """Remember ``record`` (an existing record for the key is replaced)."""
        now = time.time()
        layer = record.layer
        self._db.execute(
            "INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (record.key, record.chain,
             layer.descriptor.to_json().decode() if layer else None,
             str(layer.diff_id) if layer else None, record.created,
             layer.descriptor.size if layer else 0, now, now))

    def delete(self, key: str) -> None:
        """Forget one record."""
        self._db.execute("DELETE FROM steps WHERE key = ?", (key,))

    def records(self) -> list[CacheRecord]:
        """Every record, least recently used first."""
        rows = self._db.execute("SELECT key, chain, layer, diff_id, created, size FROM steps "
                                "ORDER BY used")
        return [_record(r) for r in rows]

    def total_size(self) -> int:
        """The bytes of layer blobs the records name (a layer shared by records counts
        once per record)."""
        row = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM steps").fetchone()
        return int(row[0])

    def clear(self) -> int:
        """Forget every record; return how many there were."""
        return self._db.execute("DELETE FROM steps").rowcount


def _record(row: tuple[str, str | None, str | None, str | None, str, int]) -> CacheRecord:
    key, chain, layer_json, diff_id, created, size = row
    layer = None
    if layer_json and diff_id:
        layer = Layer(Descriptor.from_json(layer_json), Digest.parse(diff_id), 0)
    return CacheRecord(key, chain, layer, created, size)
