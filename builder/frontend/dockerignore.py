"""``.dockerignore`` rules with moby/patternmatcher semantics.

Patterns are Go ``filepath.Match`` patterns (``*``, ``?``, ``[...]``, ``\\`` escapes) plus
``**`` spanning directories. A pattern also excludes everything below a directory it matches.
``!pattern`` re-includes; the last matching pattern wins.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from builder.errors import ContextError

__all__ = ["DockerIgnore", "IgnorePattern", "clean_path", "find_dockerignore"]


def clean_path(path: str) -> str:
    """Clean ``path`` like Go's ``filepath.Clean`` and drop a leading ``/``."""
    cleaned = posixpath.normpath(path) if path else "."
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if len(cleaned) > 1 and cleaned.startswith("/"):
        cleaned = cleaned[1:]
    return cleaned


def _translate(pattern: str) -> str:
    """Translate a pattern into an anchored Python regular expression."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                out.append(re.escape("\\"))
        elif ch == "[":
            end, body = _char_class(pattern, i)
            out.append(body)
            i = end
        else:
            out.append(re.escape(ch))
    out.append("$")
    return "".join(out)


def _char_class(pattern: str, i: int) -> tuple[int, str]:
    """Translate the class starting after ``[`` at ``i``; return the end index and regex."""
    parts = ["["]
    if i < len(pattern) and pattern[i] in "!^":
        parts.append("^")
        i += 1
    first = True
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "]" and not first:
            parts.append("]")
            return i, "".join(parts)
        first = False
        if ch == "\\":
            if i >= len(pattern):
                break
            ch = pattern[i]
            i += 1
        parts.append(ch if ch == "-" else re.escape(ch))
    raise ValueError("unterminated character class")


@dataclass(frozen=True)
class IgnorePattern:
    """One cleaned pattern; ``exclusion`` is True for ``!`` (re-include) patterns."""

    text: str
    exclusion: bool
    regex: re.Pattern[str]

    @classmethod
    def parse(cls, raw: str) -> IgnorePattern:
        """Parse one non-blank, non-comment line of a ``.dockerignore`` file."""
        pattern = raw.strip()
        exclusion = pattern.startswith("!")
        if exclusion:
            pattern = pattern[1:].strip()
            if not pattern:
                raise ContextError(f'illegal exclusion pattern: "{raw.strip()}"')
        pattern = clean_path(pattern)
        try:
            regex = re.compile(_translate(pattern), re.DOTALL)
        except (ValueError, re.error) as exc:
            raise ContextError(f"invalid .dockerignore pattern {raw.strip()!r}: {exc}") from None
        return cls(pattern, exclusion, regex)

    def match(self, path: str) -> bool:
        """True when the pattern matches ``path`` or one of its parent directories."""
        if self.regex.match(path):
            return True
        parts = path.split("/")
        return any(self.regex.match("/".join(parts[:i])) for i in range(1, len(parts)))

    def may_match_below(self, directory: str) -> bool:
        """True when the pattern could match ``directory`` or something inside it."""
        pat_parts = self.text.split("/")
        dir_parts = [] if directory == "." else directory.split("/")
        for index, part in enumerate(dir_parts):
            if index >= len(pat_parts):
                return True
            component = pat_parts[index]
            if "**" in component:
                return True
            if not re.match(_translate(component), part, re.DOTALL):
                return False
        return True


@dataclass(frozen=True)
class DockerIgnore:
    """The ordered patterns of a ``.dockerignore`` file."""

    patterns: tuple[IgnorePattern, ...] = ()

    @classmethod
    def parse(cls, text: str) -> DockerIgnore:
        """Parse the text of a ``.dockerignore`` file (comments ``#`` and blank lines skipped)."""
        text = text.removeprefix("\ufeff")
        patterns = []
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            patterns.append(IgnorePattern.parse(line))
        return cls(tuple(patterns))

    @classmethod
    def load(cls, path: Path | None) -> DockerIgnore:
        """Read and parse the file at ``path``; ``None`` means no rules."""
        if path is None:
            return cls()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ContextError(f"cannot read {path}: {exc}") from None
        return cls.parse(text)

    def excluded(self, path: str) -> bool:
        """True when ``path`` (relative to the context, ``/`` separated) is excluded."""
        path = clean_path(path)
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            if pattern.match(path):
                matched = not pattern.exclusion
        return matched

    def must_descend(self, directory: str) -> bool:
        """True when walking into ``directory`` is needed to find files that are not excluded.

        An excluded directory still has to be walked when an exception pattern might
        re-include something below it.
        """
        directory = clean_path(directory)
        if not self.excluded(directory):
            return True
        return any(p.exclusion and p.may_match_below(directory) for p in self.patterns)


def find_dockerignore(context: Path, dockerfile: Path) -> Path | None:
    """Return the ignore file: ``<Dockerfile>.dockerignore`` beside it, else ``.dockerignore``."""
    specific = dockerfile.with_name(dockerfile.name + ".dockerignore")
    if specific.is_file():
        return specific
    general = context / ".dockerignore"
    return general if general.is_file() else None
