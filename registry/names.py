"""Validation of what a URL names: repositories, tags, digests and upload session ids.

Each function returns the checked value or raises :class:`RegistryError` with the spec's
code and a message that repeats the offending value.
"""

from __future__ import annotations

import re

from layerstore.digest import Digest
from layerstore.errors import InvalidArgument
from registry.errors import (
    BLOB_UPLOAD_UNKNOWN,
    DIGEST_INVALID,
    MANIFEST_INVALID,
    NAME_INVALID,
    RegistryError,
)

MAX_NAME_LENGTH = 255
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_valid_names: dict[str, None] = {}
_NAME_MEMO_LIMIT = 4096


def check_name(name: str) -> str:
    """A repository name per the spec grammar, at most 255 characters; else NAME_INVALID."""
    if name in _valid_names:
        return name
    if len(name) > MAX_NAME_LENGTH:
        raise RegistryError(
            NAME_INVALID,
            f"invalid repository name {name[:64]!r}...: longer than {MAX_NAME_LENGTH} characters",
            detail={"name": name[:MAX_NAME_LENGTH]},
        )
    if not NAME_RE.fullmatch(name):
        raise RegistryError(
            NAME_INVALID,
            f"invalid repository name {name!r}: path components must match "
            "[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)* separated by '/'",
            detail={"name": name},
        )
    if len(_valid_names) >= _NAME_MEMO_LIMIT:
        _valid_names.clear()
    _valid_names[name] = None
    return name


def is_tag(text: str) -> bool:
    """Whether ``text`` is a valid tag."""
    return TAG_RE.fullmatch(text) is not None


def check_tag(tag: str, repository: str) -> str:
    """A tag per ``[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}``; else MANIFEST_INVALID."""
    if not is_tag(tag):
        raise RegistryError(
            MANIFEST_INVALID,
            f"invalid tag {tag[:160]!r} for repository {repository!r}: tags must match "
            "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}",
            detail={"tag": tag[:160]},
        )
    return tag


def parse_digest(text: str, repository: str = "") -> Digest:
    """A ``sha256:``/``sha512:`` digest; else DIGEST_INVALID naming the value."""
    try:
        return Digest.parse(text)
    except InvalidArgument as exc:
        where = f" in repository {repository!r}" if repository else ""
        raise RegistryError(
            DIGEST_INVALID, f"invalid digest {text[:160]!r}{where}: {exc}",
            detail={"digest": text[:160]},
        ) from None


def is_digest_reference(reference: str) -> bool:
    """Whether a manifest reference is a digest (tags cannot contain ``:``)."""
    return ":" in reference


def check_upload_id(upload_id: str, repository: str) -> str:
    """An upload session id as this registry issues them; else BLOB_UPLOAD_UNKNOWN."""
    if not _UUID_RE.fullmatch(upload_id):
        raise RegistryError(
            BLOB_UPLOAD_UNKNOWN,
            f"upload {upload_id[:80]!r} is unknown to repository {repository!r}",
            detail={"uuid": upload_id[:80]},
        )
    return upload_id
