"""The local image store: image names (``repo:tag``) → a manifest or index descriptor, in sqlite."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from layerstore.digest import Digest
from layerstore.errors import InvalidArgument, NotFound
from layerstore.oci import Descriptor, MediaType
from layerstore.sqlitedb import Schema, open_database

# Version 1 is the schema written before versions were recorded, hence IF NOT EXISTS.
SCHEMA = Schema(
    what="image store",
    version=1,
    create=(
        "CREATE TABLE IF NOT EXISTS images (name TEXT PRIMARY KEY, descriptor TEXT NOT NULL,"
        " created_at REAL NOT NULL, updated_at REAL NOT NULL)",
    ),
)

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*"
                      r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def split_name(name: str) -> tuple[str, str]:
    """Split ``[host[:port]/]path[:tag]`` into repository and tag (``latest`` when absent).

    The host is recognised as docker does: a first component holding ``.`` or ``:`` or equal
    to ``localhost``.
    """
    repo, tag = name, "latest"
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        repo, tag = name[:colon], name[colon + 1:]
    first, sep, rest = repo.partition("/")
    host = first if sep and ("." in first or ":" in first or first == "localhost") else ""
    path = rest if host else repo
    if (host and not _HOST_RE.match(host)) or not _PATH_RE.match(path):
        raise InvalidArgument(f"invalid image name {name!r}: repository {repo!r} must be "
                              "[host[:port]/]path with lowercase path components of letters, "
                              "digits and separators (. _ __ -)")
    if not _TAG_RE.match(tag):
        raise InvalidArgument(f"invalid image name {name!r}: tag {tag!r} must match "
                              "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
    return repo, tag


@dataclass(frozen=True)
class ImageRecord:
    """One named image."""

    name: str
    target: Descriptor
    created_at: float
    updated_at: float


class ImageStore:
    """Names of local images, kept in a sqlite database (see :mod:`layerstore.sqlitedb`)."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the image store database at ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = open_database(path, SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def put(self, name: str, target: Descriptor) -> ImageRecord:
        """Point ``name`` at a manifest or index (replacing what it pointed at)."""
        repo, tag = split_name(name)
        if target.media_type not in MediaType.MANIFESTS | MediaType.INDEXES:
            raise InvalidArgument(f"image {name!r} must point at a manifest or index, "
                                  f"not {target.media_type!r}")
        full = f"{repo}:{tag}"
        now = time.time()
        self._db.execute(
            "INSERT INTO images VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "descriptor=excluded.descriptor, updated_at=excluded.updated_at",
            (full, target.to_json().decode(), now, now),
        )
        return self.get(full)

    def get(self, name: str) -> ImageRecord:
        """The image called ``name``; ``NotFound`` if there is none."""
        repo, tag = split_name(name)
        row = self._db.execute("SELECT * FROM images WHERE name = ?", (f"{repo}:{tag}",)).fetchone()
        if row is None:
            raise NotFound(f"no image named {repo}:{tag}")
        return _record(row)

    def delete(self, name: str) -> None:
        """Forget ``name`` (its blobs stay until garbage collection)."""
        repo, tag = split_name(name)
        cur = self._db.execute("DELETE FROM images WHERE name = ?", (f"{repo}:{tag}",))
        if cur.rowcount == 0:
            raise NotFound(f"no image named {repo}:{tag}")

    def list(self) -> list[ImageRecord]:
        """Every named image, sorted by name."""
        return [_record(r) for r in self._db.execute("SELECT * FROM images ORDER BY name")]

    def referenced(self) -> set[Digest]:
        """The digests every name points at (roots for garbage collection)."""
        return {r.target.digest for r in self.list()}


def _record(row: tuple[str, str, float, float]) -> ImageRecord:
    return ImageRecord(row[0], Descriptor.from_json(row[1]), row[2], row[3])
