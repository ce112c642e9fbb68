"""Repository and tag patterns of replication rules: the doublestar syntax of tag policy
rules (:mod:`registry.tagpolicy.patterns`: ``*``, ``**``, ``?``, ``{a,b}``), so that one
grammar selects repositories and tags across the registry; a malformed pattern is a
:class:`~registry.replication.model.ReplicationError` naming the flag."""

from __future__ import annotations

from registry.replication.model import ReplicationError
from registry.tagpolicy.errors import InvalidRule
from registry.tagpolicy.patterns import Pattern
from registry.tagpolicy.patterns import compile_pattern as _compile

__all__ = ["Pattern", "compile_pattern"]


def compile_pattern(text: str, flag: str) -> Pattern:
    """Compile ``text`` (the value of ``flag``, named in errors); ReplicationError if it
    is malformed."""
    try:
        return _compile(text, flag)
    except InvalidRule as exc:
        raise ReplicationError(str(exc)) from None
