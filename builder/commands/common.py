"""What the image commands share: finding local images (:mod:`builder.localimages`), and
printing them."""

from __future__ import annotations

import json
import re
import sys
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from builder.errors import BuildError
from builder.localimages import (
    IMAGE_NAME_ANNOTATION,
    LocalImage,
    all_images,
    check_name,
    familiar_name,
    find_image,
    find_name,
    local_image,
    resolve,
)

__all__ = ["IMAGE_NAME_ANNOTATION", "LocalImage", "all_images", "check_name", "created_at",
           "created_since", "ellipsis", "familiar_name", "find_image", "find_name",
           "format_each", "human_duration", "human_size", "local_image", "parse_created",
           "print_error", "print_rows", "render_template", "resolve", "table"]

# -- time and size -------------------------------------------------------------------------

_CREATED_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})?$")


def parse_created(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp (any number of fraction digits) as an aware datetime."""
    if not text:
        return None
    m = _CREATED_RE.match(text.strip())
    if m is None:
        return None
    date, clock, fraction, zone = m.groups()
    fraction = (fraction or "0")[:6].ljust(6, "0")
    offset = "+00:00" if zone in (None, "Z", "z") else zone
    try:
        return datetime.fromisoformat(f"{date}T{clock}.{fraction}{offset}")
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """How long ago, in docker's words (``About an hour``, ``3 weeks``)."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{s // 3600 // 24 // 365} years"


def created_since(created: str | None, now: float | None = None) -> str:
    """``5 minutes ago`` for a config's ``created``, ``N/A`` when it has none."""
    moment = parse_created(created)
    if moment is None:
        return "N/A"
    return f"{human_duration((now or time.time()) - moment.timestamp())} ago"


def created_at(created: str | None) -> str:
    """``2024-01-02 03:04:05 +0000 UTC`` as docker's ``CreatedAt`` shows it."""
    moment = parse_created(created)
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def human_size(size: float) -> str:
    """A byte count in decimal units with three significant digits (``12.3MB``)."""
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.3g}{units[i]}"


def ellipsis(text: str, width: int) -> str:
    """``text`` cut to ``width`` display columns, ending in ``…`` when cut."""
    if _width(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        w = _width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


# -- output --------------------------------------------------------------------------------

def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Aligned columns as docker prints its tables (Go's tabwriter with a minimum cell
    width of 10 and a padding of 3)."""
    all_rows = [list(headers), *[list(r) for r in rows]]
    widths = [max(10, max(_width(r[i]) for r in all_rows) + 3) for i in range(len(headers))]
    lines = []
    for row in all_rows:
        cells = [cell + " " * (widths[i] - _width(cell)) for i, cell in enumerate(row[:-1])]
        lines.append("".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


_ACTION_RE = re.compile(r"\{\{(.*?)\}\}", re.S)
_FIELD_RE = re.compile(r"^\s*(json\s+)?(\.(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)?)"
                       r"\s*$")


def render_template(template: str, value: Mapping[str, Any]) -> str:
    """Fill a docker ``--format`` template of the small subset understood here: literal text
    with ``{{.Field}}``, ``{{.Field.Sub}}``, ``{{.}}`` and ``{{json .Field}}`` actions."""
    out = []
    pos = 0
    for m in _ACTION_RE.finditer(template):
        out.append(template[pos:m.start()])
        pos = m.end()
        action = _FIELD_RE.match(m.group(1))
        if action is None:
            raise BuildError(f"template action {m.group(0)!r} is not supported (use "
                             "{{.Field}}, {{.Field.Sub}} or {{json .Field}})")
        found = _lookup(value, action.group(2))
        out.append(json.dumps(found) if action.group(1) else _go_string(found))
    rest = template[pos:]
    if "{{" in rest:
        raise BuildError(f"template {template!r}: unclosed action")
    out.append(rest)
    return "".join(out).replace("\\n", "\n").replace("\\t", "\t")


def _lookup(value: Any, path: str) -> Any:
    current = value
    for part in path.strip(".").split(".") if path != "." else ():
        if not isinstance(current, Mapping):
            raise BuildError(f"template: cannot get field {part!r} of {_go_string(current)!r}")
        if part not in current:
            return None
        current = current[part]
    return current


def _go_string(value: Any) -> str:
    """A value printed as Go's text/template prints the same JSON-decoded value."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_go_string(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_go_string(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def format_each(fmt: str, values: Iterable[Mapping[str, Any]]) -> list[str]:
    """``--format json`` (one compact JSON object a line) or a template, for each value."""
    if fmt == "json":
        return [json.dumps(v, separators=(",", ":")) for v in values]
    return [render_template(fmt, v) for v in values]


def print_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]], *,
               quiet: bool = False, fmt: str | None = None) -> None:
    """Print ``rows`` as docker list commands do: their IDs (``quiet``), one template line
    each (``fmt``), or a table of ``columns`` (header, row key)."""
    if quiet:
        for row in rows:
            print(row["ID"])
    elif fmt:
        for line in format_each(fmt, rows):
            print(line)
    else:
        print(table([h for h, _ in columns], ([row[k] for _, k in columns] for row in rows)))


def print_error(error: Exception) -> None:
    """Print one ``error: …`` line, for commands that go on after a failing argument."""
    print(f"error: {error}", file=sys.stderr)
