"""Repository and tag patterns of replication rules: the doublestar syntax of tag policy
rules (:mod:`registry.tagpolicy.patterns`: ``*``, ``**``, ``?``, ``{a,b}``), so that one
grammar selects repositories and tags across the registry; a malformed pattern is a
:class:`~registry.replication.model.ReplicationError` naming the flag. A pattern without
wildcards names its repositories itself (:func:`literal_names`), so a rule can pull from a
registry that does not list its catalog."""

from __future__ import annotations

from registry.replication.model import ReplicationError
from registry.tagpolicy.errors import InvalidRule
from registry.tagpolicy.patterns import Pattern
from registry.tagpolicy.patterns import compile_pattern as _compile

__all__ = ["Pattern", "compile_pattern", "literal_names"]


def compile_pattern(text: str, flag: str) -> Pattern:
    """Compile ``text`` (the value of ``flag``, named in errors); ReplicationError if it
    is malformed."""
    try:
        return _compile(text, flag)
    except InvalidRule as exc:
        raise ReplicationError(str(exc)) from None


def literal_names(text: str) -> list[str] | None:
    """The names a pattern without ``*`` or ``?`` matches (``{a,b}/app``: ``a/app``,
    ``b/app``); ``None`` when it has wildcards (the names must be listed)."""
    if "*" in text or "?" in text:
        return None
    names = [""]
    rest = text
    while rest:
        start = rest.find("{")
        if start < 0:
            names = [n + rest for n in names]
            break
        end = rest.index("}", start)
        choices = rest[start + 1:end].split(",")
        names = [n + rest[:start] + c for n in names for c in choices]
        rest = rest[end + 1:]
    return names
