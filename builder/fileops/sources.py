"""Selecting the sources of a COPY/ADD: paths and wildcard patterns below a source root.

A source root is the build context or another stage's (or image's) root filesystem.
Patterns use Go's ``filepath.Match`` per path component (``*``, ``?``, ``[a-z]``, ``[^a]``,
``\\`` escapes), as BuildKit resolves them: the components before the first wildcard are
resolved inside the root following symlinks, the rest are matched entry by entry without
descending into symlinks. A leading ``/`` or ``..`` never leaves the root.

For context sources a :class:`~builder.frontend.dockerignore.DockerIgnore` hides what
``.dockerignore`` excludes, exactly as if those files had not been sent.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from builder.errors import DockerfileError
from builder.frontend.dockerignore import DockerIgnore
from layerstore.rootpath import resolve, split

__all__ = ["BadPattern", "Source", "contains_wildcards", "list_directory", "match",
           "select_sources"]

_LISTING_LIMIT = 10


class BadPattern(ValueError):
    """A pattern that Go's ``filepath.Match`` rejects (``ErrBadPattern``)."""


@dataclass(frozen=True)
class Source:
    """A selected source: ``relpath`` as named (``/``-separated, ``.`` for the root) and
    ``path``, its host path with symlinks followed inside the root."""

    relpath: str
    path: Path


def contains_wildcards(pattern: str) -> bool:
    """True when ``pattern`` has an unescaped ``*``, ``?`` or ``[``."""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c in "*?[":
            return True
        i += 1
    return False


def _scan_chunk(pattern: str) -> tuple[bool, str, str]:
    """Split off the leading stars and the chunk up to the next unbracketed ``*``."""
    star = False
    while pattern.startswith("*"):
        pattern = pattern[1:]
        star = True
    in_range = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 < len(pattern):
                i += 1
        elif c == "[":
            in_range = True
        elif c == "]":
            in_range = False
        elif c == "*" and not in_range:
            break
        i += 1
    return star, pattern[:i], pattern[i:]


def _get_esc(chunk: str) -> tuple[str, str]:
    """One possibly escaped character of a character class."""
    if not chunk or chunk[0] in "-]":
        raise BadPattern("syntax error in pattern")
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if not chunk:
            raise BadPattern("syntax error in pattern")
    char, chunk = chunk[0], chunk[1:]
    if not chunk:
        raise BadPattern("syntax error in pattern")
    return char, chunk


def _match_chunk(chunk: str, s: str) -> str | None:
    """Match ``chunk`` against the start of ``s``; the rest of ``s``, or None."""
    failed = False
    while chunk:
        if not failed and not s:
            failed = True
        c = chunk[0]
        if c == "[":
            char = ""
            if not failed:
                char, s = s[0], s[1:]
            chunk = chunk[1:]
            negated = chunk.startswith("^")
            if negated:
                chunk = chunk[1:]
            matched = False
            ranges = 0
            while True:
                if chunk.startswith("]") and ranges > 0:
                    chunk = chunk[1:]
                    break
                lo, chunk = _get_esc(chunk)
                hi = lo
                if chunk[0] == "-":
                    hi, chunk = _get_esc(chunk[1:])
                if lo <= char <= hi and char:
                    matched = True
                ranges += 1
            if matched == negated:
                failed = True
        elif c == "?":
            if not failed:
                if s[0] == "/":
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
        else:
            if c == "\\":
                chunk = chunk[1:]
                if not chunk:
                    raise BadPattern("syntax error in pattern")
            if not failed:
                if chunk[0] != s[0]:
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
    return None if failed else s


def match(pattern: str, name: str) -> bool:
    """Go's ``filepath.Match``; a malformed pattern raises :class:`BadPattern`."""
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and not chunk:
            return "/" not in name
        rest = _match_chunk(chunk, name)
        if rest is not None and (not rest or pattern):
            name = rest
            continue
        if star:
            i = 0
            found = False
            while i < len(name) and name[i] != "/":
                rest = _match_chunk(chunk, name[i + 1:])
                if rest is not None:
                    if not pattern and rest:
                        i += 1
                        continue
                    name = rest
                    found = True
                    break
                i += 1
            if found:
                continue
        while pattern:
            _, chunk, pattern = _scan_chunk(pattern)
            _match_chunk(chunk, "")
        return False
    return not name


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _visible(ignore: DockerIgnore | None, relpath: str) -> bool:
    return ignore is None or not ignore.excluded(relpath)


def _relative(root: Path, host: Path) -> str:
    rel = os.path.relpath(host, root)
    return "." if rel == "." else rel


def _walk_matches(root: Path, base: list[str], parts: list[str],
                  ignore: DockerIgnore | None) -> Iterator[str]:
    """Relative paths below ``base`` whose components match ``parts`` one by one."""
    directory = os.path.join(root, *base)
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return
    for name in names:
        if not match(parts[0], name):
            continue
        relpath = "/".join([*base, name])
        if not _visible(ignore, relpath) and (
                len(parts) == 1 or ignore is None or not ignore.must_descend(relpath)):
            continue
        if len(parts) == 1:
            yield relpath
        elif _is_dir(os.path.join(directory, name)):
            yield from _walk_matches(root, [*base, name], parts[1:], ignore)


def select_sources(root: Path, pattern: str, *, ignore: DockerIgnore | None = None,
                   context: bool = True) -> list[Source]:
    """The sources ``pattern`` names below ``root``, in lexical order.

    A path without wildcards must exist (after following symlinks inside the root) and not
    be excluded by ``ignore``; otherwise :class:`DockerfileError` names the pattern and lists
    what its directory holds (``context`` says whether ``root`` is the build context, for
    the message). A wildcard pattern that matches nothing selects nothing, as in
    BuildKit (``COPY package.json yarn.lock* ./`` copies an optional file).
    """
    parts = split(pattern)
    try:
        wildcard_at = next(i for i, p in enumerate(parts) if contains_wildcards(p))
    except StopIteration:
        wildcard_at = len(parts)
    try:
        return _select(root, pattern, parts, wildcard_at, ignore, context)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        where = "the build context" if context else "the source stage or image"
        raise DockerfileError(f"{pattern!r} in {where}: symlink loop at {exc.filename!r}"
                              ) from None


def _select(root: Path, pattern: str, parts: list[str], wildcard_at: int,
            ignore: DockerIgnore | None, context: bool) -> list[Source]:
    """:func:`select_sources` once the first wildcard component is known."""
    if wildcard_at == len(parts):
        literal = "/".join(_unescape(p) for p in parts) or "."
        source = _existing(root, literal, ignore)
        if source is None:
            raise _not_found(root, pattern, literal, ignore, context)
        return [source]
    prefix = "/".join(_unescape(p) for p in parts[:wildcard_at])
    base_host = resolve(root, prefix) if prefix else Path(root)
    if not _is_dir(os.fspath(base_host)):
        return []
    base_rel = _relative(Path(root), base_host)
    if prefix and not _visible(ignore, base_rel) and (
            ignore is None or not ignore.must_descend(base_rel)):
        return []
    base = [] if base_rel == "." else base_rel.split("/")
    try:
        found = list(_walk_matches(Path(root), base, parts[wildcard_at:], ignore))
    except BadPattern:
        raise DockerfileError(f"invalid source pattern {pattern!r}: syntax error in pattern"
                              ) from None
    result = []
    for relpath in found:
        source = _existing(root, relpath, ignore)
        if source is not None:
            result.append(Source(relpath, source.path))
    return result


def _unescape(part: str) -> str:
    """A literal component: Go's ``filepath.Match`` treats ``\\x`` as ``x``."""
    if "\\" not in part:
        return part
    out = []
    i = 0
    while i < len(part):
        if part[i] == "\\" and i + 1 < len(part):
            i += 1
        out.append(part[i])
        i += 1
    return "".join(out)


def _existing(root: Path, relpath: str, ignore: DockerIgnore | None) -> Source | None:
    """``relpath`` resolved inside ``root`` if it (and its target) exists and is visible.

    An excluded directory still counts when ``.dockerignore`` re-includes something in it.
    A symlink loop on the way raises ``OSError(ELOOP)``.
    """
    try:
        host = resolve(root, relpath)
        is_dir = stat.S_ISDIR(os.lstat(host).st_mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise
        return None
    for name in {relpath, _relative(Path(root), host)}:
        if name == "." or ignore is None or not ignore.excluded(name):
            continue
        if not (is_dir and ignore.must_descend(name)):
            return None
    return Source(relpath, host)


def list_directory(root: Path, directory: str, ignore: DockerIgnore | None,
                   limit: int = _LISTING_LIMIT) -> tuple[list[str], int]:
    """Up to ``limit`` visible names in ``directory`` (directories end in ``/``) and the
    total count."""
    try:
        host = resolve(root, directory)
        names = sorted(os.listdir(host))
    except OSError:
        return [], 0
    shown: list[str] = []
    total = 0
    for name in names:
        relpath = name if directory in ("", ".") else f"{directory}/{name}"
        if not _visible(ignore, relpath):
            continue
        total += 1
        if len(shown) < limit:
            shown.append(name + "/" if os.path.isdir(os.path.join(host, name)) else name)
    return shown, total


def _not_found(root: Path, pattern: str, literal: str, ignore: DockerIgnore | None,
               context: bool) -> DockerfileError:
    """The error for a missing source, listing its nearest existing directory."""
    where = "the build context" if context else "the source stage or image"
    message = f"{pattern!r} not found in {where}"
    if ignore is not None and ignore.patterns:
        message += " (or excluded by .dockerignore)"
    parts = literal.split("/") if literal != "." else []
    for depth in range(len(parts) - 1, -1, -1):
        directory = "/".join(parts[:depth]) or "."
        existing = _existing(root, directory, ignore)
        if existing is None or not existing.path.is_dir():
            continue
        shown, total = list_directory(root, directory, ignore)
        label = "the root" if directory == "." else repr(directory)
        if not total:
            return DockerfileError(f"{message}; {label} is empty")
        more = f" and {total - len(shown)} more" if total > len(shown) else ""
        return DockerfileError(f"{message}; {label} contains: {', '.join(shown)}{more}")
    return DockerfileError(message)
