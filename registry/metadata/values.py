"""Checks and conversions of the values the metadata stores keep, shared by every backend:
a bad argument is an :class:`~layerstore.errors.InvalidArgument` naming it, whatever the
database behind."""

from __future__ import annotations

import functools

from layerstore.digest import Digest
from layerstore.errors import InvalidArgument


@functools.lru_cache(maxsize=8192)
def parse_digest(text: str) -> Digest:
    """A digest read back from the database (parsed once per distinct value)."""
    return Digest.parse(text)


def digest_text(value: object, what: str) -> str:
    """``value``, which must be a :class:`Digest`, as stored."""
    if not isinstance(value, Digest):
        raise InvalidArgument(f"{what} must be a Digest, not {type(value).__name__} {value!r}")
    return str(value)


def text(value: object, what: str, *, nul_ok: bool = True) -> str:
    """``value``, which must be a string (without NUL characters unless ``nul_ok``)."""
    if type(value) is not str:
        raise InvalidArgument(f"{what} must be a string, not {type(value).__name__} {value!r}")
    if not nul_ok and "\x00" in value:
        raise InvalidArgument(f"{what} must not contain NUL characters: {value!r}")
    return value


def size(value: object, what: str) -> int:
    """``value``, which must be a non-negative int."""
    if type(value) is not int or value < 0:
        raise InvalidArgument(f"{what} must be a non-negative int, not {value!r}")
    return value
