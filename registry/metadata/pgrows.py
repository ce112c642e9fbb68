"""Values between the PostgreSQL metadata store and its rows: arguments checked and
converted for the database (text without NUL, JSON mappings, limits), rows turned back into
records, and a database URL made fit for messages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from psycopg.types.json import Jsonb

from layerstore.errors import InvalidArgument
from registry.metadata.store import ManifestRecord, UploadRecord
from registry.metadata.values import parse_digest as _digest
from registry.metadata.values import text

__all__ = ["has_nul", "limit", "mapping", "record", "redact", "text_value", "upload"]


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def mapping(value: Mapping[str, str] | None, what: str) -> Jsonb | None:
    if value is None:
        return None
    try:
        plain = dict(value)
    except (TypeError, ValueError) as err:
        raise InvalidArgument(f"{what} cannot be stored: {err}") from None
    for key, item in plain.items():
        text_value(key, f"{what} key")
        text_value(item, f"{what} value of {key!r}")
    return Jsonb(plain)


def text_value(value: object, what: str) -> str:
    return text(value, what, nul_ok=False)


def has_nul(args: Sequence[Any] | Mapping[str, Any]) -> bool:
    """Whether a key holds a NUL character: PostgreSQL text cannot, so nothing stored can
    match it (and sending it would be an error)."""
    values = args.values() if isinstance(args, Mapping) else args
    return any(isinstance(v, str) and "\x00" in v for v in values)


def limit(n: int | None) -> int | None:
    if n is not None and (type(n) is not int or n < 0):
        raise InvalidArgument(f"n must be a non-negative int, not {n!r}")
    return n


def record(row: Sequence[Any]) -> ManifestRecord:
    digest, media_type, size, subject, artifact_type, annotations, refs, created_at = row
    return ManifestRecord(
        digest=_digest(digest),
        media_type=media_type,
        size=size,
        references=tuple(_digest(ref) for ref in refs),
        subject=None if subject is None else _digest(subject),
        artifact_type=artifact_type,
        annotations=annotations,
        created_at=created_at,
    )


def upload(row: Sequence[Any]) -> UploadRecord:
    uuid, repo, started_at, labels = row
    return UploadRecord(uuid=uuid, repository=repo, started_at=started_at, labels=labels)
