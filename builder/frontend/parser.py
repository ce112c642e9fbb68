"""Line-level Dockerfile parsing: directives, comments, continuations, flags and heredocs.

The result is a list of :class:`RawInstruction` values that
:mod:`builder.frontend.instructions` turns into typed instructions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from builder.errors import DockerfileError, ExpansionError
from builder.frontend.words import process_word

__all__ = [
    "Directives",
    "Flag",
    "Heredoc",
    "RawInstruction",
    "parse_json_array",
    "split_flags",
    "split_lines",
    "split_words",
]

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_KNOWN_DIRECTIVES = ("syntax", "escape", "check")
_HEREDOC_WORD = re.compile(r"^(\d*)<<(-?)([^<]+)$")
HEREDOC_KEYWORDS = ("run", "copy", "add")


@dataclass(frozen=True)
class Directives:
    """The parser directives from the top of the file."""

    syntax: str | None = None
    escape: str = "\\"
    check: str | None = None


@dataclass(frozen=True)
class Heredoc:
    """A here-document body; ``expand`` is False when the delimiter was quoted."""

    name: str
    content: str
    expand: bool = True
    chomp: bool = False
    fd: int | None = None


@dataclass(frozen=True)
class Flag:
    """One ``--name[=value]`` flag; ``value`` is None for a bare boolean flag."""

    name: str
    value: str | None


@dataclass(frozen=True)
class RawInstruction:
    """One instruction: its keyword (lower case), the text after it and where it started."""

    keyword: str
    rest: str
    line: int
    original: str
    heredocs: tuple[Heredoc, ...] = ()
    escape: str = "\\"


def _parse_directives(lines: list[str], file: str) -> tuple[Directives, int]:
    """Read directives from the top; return them and the index of the first other line."""
    found: dict[str, str] = {}
    index = 0
    for index, line in enumerate(lines):
        match = _DIRECTIVE.match(line.strip()) if line.strip() else None
        if not match:
            break
        key = match.group(1).lower()
        if key not in _KNOWN_DIRECTIVES:
            break
        if key in found:
            raise DockerfileError(f"only one {key} parser directive can be used", index + 1, file)
        found[key] = match.group(2)
    else:
        index = len(lines)
    escape = found.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise DockerfileError(f"invalid escape token {escape!r} does not match ` or \\", 1, file)
    return Directives(found.get("syntax"), escape, found.get("check")), index


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _strip_continuation(line: str, escape: str) -> tuple[str, bool]:
    """Remove a trailing escape character (and spaces after it); report whether one was there."""
    stripped = line.rstrip(" \t")
    if stripped.endswith(escape):
        return stripped[: -len(escape)], True
    return line, False


def _heredoc_markers(text: str, escape: str) -> list[tuple[str, bool, bool, int | None]]:
    """Find ``<<NAME`` words in ``text``: (name, expand, chomp, fd) for each, in order.

    Only a whole word starts a heredoc; a quoted or escaped name disables expansion.
    """
    markers = []
    for word in split_words(text, escape):
        match = _HEREDOC_WORD.match(word)
        if not match:
            continue
        fd_text, dash, raw_name = match.groups()
        try:
            name = process_word(raw_name, {}, escape)
        except ExpansionError:
            continue
        if name:
            fd = int(fd_text) if fd_text else None
            markers.append((name, name == raw_name, bool(dash), fd))
    return markers


def _read_heredocs(
    text: str, lines: list[str], start: int, where: tuple[str, int], escape: str
) -> tuple[tuple[Heredoc, ...], int]:
    """Collect the bodies of every heredoc named in ``text``; return them and the next index."""
    docs: list[Heredoc] = []
    index = start
    for name, expand, chomp, fd in _heredoc_markers(text, escape):
        body: list[str] = []
        while True:
            if index >= len(lines):
                raise DockerfileError(f"unterminated heredoc {name}", where[1], where[0])
            line = lines[index]
            index += 1
            if chomp:
                line = line.lstrip("\t")
            if line == name:
                break
            body.append(line + "\n")
        docs.append(Heredoc(name, "".join(body), expand, chomp, fd))
    return tuple(docs), index


def split_lines(text: str, file: str = "Dockerfile") -> tuple[Directives, list[RawInstruction]]:
    """Split Dockerfile ``text`` into directives and raw, line-numbered instructions."""
    lines = text.removeprefix("\ufeff").replace("\r\n", "\n").split("\n")
    directives, index = _parse_directives(lines, file)
    escape = directives.escape
    result: list[RawInstruction] = []
    while index < len(lines):
        line = lines[index].lstrip()
        index += 1
        if not line or _is_comment(line):
            continue
        start = index
        original = [lines[index - 1]]
        combined, more = _strip_continuation(line, escape)
        while more and index < len(lines):
            nxt = lines[index]
            index += 1
            original.append(nxt)
            if _is_comment(nxt) or not nxt.strip():
                continue
            part, more = _strip_continuation(nxt, escape)
            combined += part
        keyword, _, rest = combined.strip().partition(" ")
        if "\t" in keyword:
            keyword, _, tail = keyword.partition("\t")
            rest = tail + " " + rest
        keyword = keyword.lower()
        heredocs: tuple[Heredoc, ...] = ()
        if keyword in HEREDOC_KEYWORDS or (
            keyword == "onbuild" and rest.strip().split(" ")[0].lower() in HEREDOC_KEYWORDS
        ):
            heredocs, index = _read_heredocs(rest, lines, index, (file, start), escape)
        result.append(
            RawInstruction(keyword, rest.strip(), start, "\n".join(original), heredocs, escape)
        )
    return directives, result


def _take_word(text: str, escape: str = "\\") -> tuple[str, str]:
    """Split the first whitespace-separated word (quotes and escapes respected) off ``text``."""
    quote = ""
    escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == escape and quote != "'":
            escaped = True
        elif quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch.isspace():
            return text[:i], text[i:].lstrip()
    return text, ""


def split_words(text: str, escape: str = "\\") -> list[str]:
    """Split ``text`` on unquoted, unescaped whitespace, keeping quotes and escapes."""
    words: list[str] = []
    text = text.strip()
    while text:
        word, text = _take_word(text, escape)
        words.append(word)
    return words


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def split_flags(rest: str, escape: str = "\\") -> tuple[list[Flag], str]:
    """Take the leading ``--flag[=value]`` words off ``rest``; ``--`` ends the flags."""
    flags: list[Flag] = []
    while rest.startswith("--"):
        word, rest = _take_word(rest, escape)
        if word == "--":
            break
        name, eq, value = word[2:].partition("=")
        flags.append(Flag(name, _unquote(value) if eq else None))
    return flags, rest


def parse_json_array(rest: str) -> list[str] | None:
    """Return ``rest`` as a list of strings when it starts with a JSON array, else None.

    Like BuildKit, only the first JSON value is read, and a JSON array holding anything
    but strings raises :class:`ValueError` instead of falling back to the shell form.
    """
    text = rest.lstrip()
    if not text.startswith("["):
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except ValueError:
        return None
    if not all(isinstance(v, str) for v in value):
        raise ValueError("when using JSON array syntax, arrays must be comprised of strings only")
    return value
