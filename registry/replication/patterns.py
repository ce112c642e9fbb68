"""Repository and tag patterns of replication rules, in Harbor's doublestar shape.

``*`` matches any run of characters within one path segment (no ``/``), ``**`` any run
including ``/``, ``?`` one character other than ``/``, ``{a,b}`` one of the alternatives
(which may hold the other wildcards), ``[abc]`` / ``[a-z]`` / ``[!a]`` one character of a
class. An empty pattern, an unclosed ``{`` or ``[`` or a stray ``}`` or ``]`` is refused
with a message naming the flag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.replication.model import ReplicationError

__all__ = ["Pattern", "compile_pattern"]


@dataclass(frozen=True)
class Pattern:
    """A compiled pattern: ``text`` as given, ``regex`` what it means."""

    text: str
    regex: re.Pattern[str]

    def matches(self, name: str) -> bool:
        """Whether ``name`` (a repository or a tag) matches the whole pattern."""
        return self.regex.fullmatch(name) is not None


def _class(text: str, start: int, flag: str) -> tuple[str, int]:
    end = text.find("]", start + 2 if text[start + 1:start + 2] in ("!", "^") else start + 1)
    if end < 0:
        raise ReplicationError(f"{flag} {text!r}: '[' at position {start + 1} is not closed")
    body = text[start + 1:end]
    negate = body[:1] in ("!", "^")
    if negate:
        body = body[1:]
    if not body:
        raise ReplicationError(f"{flag} {text!r}: empty character class at position "
                               f"{start + 1}")
    escaped = "".join("\\" + c if c in "\\]^[" else c for c in body)
    return ("[^/" if negate else "[") + escaped + "]", end + 1


def _translate(text: str, flag: str) -> str:
    out: list[str] = []
    depth = 0
    i = 0
    while i < len(text):
        c = text[i]
        if c == "*":
            if text.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            piece, i = _class(text, i, flag)
            out.append(piece)
            continue
        elif c == "]":
            raise ReplicationError(f"{flag} {text!r}: ']' at position {i + 1} has no '['")
        elif c == "{":
            depth += 1
            out.append("(?:")
        elif c == "}":
            if depth == 0:
                raise ReplicationError(f"{flag} {text!r}: '}}' at position {i + 1} has no "
                                       "'{'")
            depth -= 1
            out.append(")")
        elif c == "," and depth > 0:
            out.append("|")
        else:
            out.append(re.escape(c))
        i += 1
    if depth:
        raise ReplicationError(f"{flag} {text!r}: '{{' is not closed")
    return "".join(out)


def compile_pattern(text: str, flag: str) -> Pattern:
    """Compile ``text`` (the value of ``flag``, named in errors); ReplicationError if it
    is malformed."""
    if not text or not text.strip():
        raise ReplicationError(f"{flag}: the pattern is empty")
    if any(ord(c) < 32 for c in text):
        raise ReplicationError(f"{flag} {text!r}: control characters are not allowed")
    return Pattern(text, re.compile(_translate(text, flag)))
