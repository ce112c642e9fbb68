"""The name patterns of tag policy rules (Harbor's doublestar syntax, a clear subset):

- ``*`` matches any run of characters except ``/``;
- ``**`` matches any run of characters, ``/`` included (``**`` alone: everything);
- ``?`` matches one character except ``/``;
- ``{a,b,c}`` matches any one of the comma-separated alternatives (not nested; each
  alternative may use ``*`` and ``?``);
- every other character matches itself.

A pattern is at most 255 characters of letters, digits and ``._-/*?{},``; anything else
(an empty pattern, unbalanced or nested braces, spaces, ``[``) is malformed.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from registry.tagpolicy.errors import InvalidRule

MAX_LENGTH = 255
_ALLOWED = re.compile(r"^[A-Za-z0-9._\-/*?{},]+$")


@dataclass(frozen=True)
class Pattern:
    """A checked pattern: its text and the regular expression it compiles to."""

    text: str
    regex: re.Pattern[str]

    def matches(self, name: str) -> bool:
        """Whether ``name`` matches the whole pattern."""
        return self.regex.fullmatch(name) is not None

    def __str__(self) -> str:
        return self.text


def _wildcards(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        char = text[i]
        out.append("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char))
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def compile_pattern(text: str, what: str) -> Pattern:
    """``text`` as a :class:`Pattern`; :class:`InvalidRule` naming ``what`` (the flag or
    field) and the problem if it is malformed."""
    if not isinstance(text, str) or not text:
        raise InvalidRule(f"{what}: the pattern is empty")
    if len(text) > MAX_LENGTH:
        raise InvalidRule(f"{what}: the pattern is longer than {MAX_LENGTH} characters")
    if not _ALLOWED.match(text):
        bad = next(c for c in text if not _ALLOWED.match(c))
        raise InvalidRule(f"{what}: {text!r} holds {bad!r}; a pattern uses letters, digits, "
                          "'._-/' and the wildcards '*', '**', '?', '{a,b}'")
    parts: list[str] = []
    rest = text
    while rest:
        start = rest.find("{")
        close = rest.find("}")
        if start < 0:
            if close >= 0:
                raise InvalidRule(f"{what}: {text!r} has a '}}' without a '{{'")
            if "," in rest:
                raise InvalidRule(f"{what}: {text!r} has a ',' outside braces")
            parts.append(_wildcards(rest))
            break
        head, rest = rest[:start], rest[start + 1:]
        if "}" in head or "," in head:
            raise InvalidRule(f"{what}: {text!r} has a '}}' or ',' outside braces")
        end = rest.find("}")
        if end < 0:
            raise InvalidRule(f"{what}: {text!r} has a '{{' that is never closed")
        inner, rest = rest[:end], rest[end + 1:]
        if "{" in inner:
            raise InvalidRule(f"{what}: {text!r} nests braces, which patterns do not allow")
        choices = inner.split(",")
        if any(not choice for choice in choices):
            raise InvalidRule(f"{what}: {text!r} has an empty alternative in braces")
        parts.append(_wildcards(head))
        parts.append("(?:" + "|".join(_wildcards(c) for c in choices) + ")")
    return Pattern(text, re.compile("".join(parts)))
