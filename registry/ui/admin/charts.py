"""Storage-usage charts drawn on the server as inline SVG (no script, no chart library):
:func:`usage_bars` draws one horizontal bar per row (a project, a repository) with its size
and, where it has one, its quota as a mark on the same scale; a row over its quota is drawn
in the warning colour. Every label is escaped; the SVG is a ``Markup`` value a template
prints as it is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from registry.projects.model import format_size

WIDTH = 720
LABEL_WIDTH = 190
BAR_WIDTH = 330
ROW_HEIGHT = 26
BAR_HEIGHT = 16
TOP = 8
LABEL_CHARS = 28


@dataclass(frozen=True)
class Bar:
    """One row of a chart: ``value`` bytes used, ``limit`` the quota (``None``: none);
    ``href`` makes the label a link."""

    label: str
    value: int
    limit: int | None = None
    href: str = ""


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS - 1] + "…"


def _caption(bar: Bar) -> str:
    used = format_size(bar.value)
    if bar.limit is None:
        return used
    if bar.limit == 0:
        return f"{used} of a 0 B quota"
    return f"{used} of {format_size(bar.limit)} ({100 * bar.value / bar.limit:.0f}%)"


def usage_bars(bars: Sequence[Bar], title: str) -> Markup:
    """An SVG bar chart of ``bars`` (drawn in the order given) titled ``title``."""
    scale = max([1, *(b.value for b in bars), *(b.limit or 0 for b in bars)])
    height = TOP * 2 + ROW_HEIGHT * max(1, len(bars))
    parts = [Markup('<svg class="usage-chart" xmlns="http://www.w3.org/2000/svg" '
                    'role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
                    'aria-label="{t}"><title>{t}</title>').format(w=WIDTH, h=height, t=title)]
    if not bars:
        parts.append(Markup('<text x="0" y="{y}" class="chart-empty">nothing stored yet'
                            '</text>').format(y=TOP + ROW_HEIGHT // 2 + 4))
    for row, bar in enumerate(bars):
        y = TOP + row * ROW_HEIGHT
        text_y = y + BAR_HEIGHT - 3
        over = bar.limit is not None and bar.value > bar.limit
        width = max(1, round(BAR_WIDTH * bar.value / scale)) if bar.value else 0
        label = Markup('<text x="{x}" y="{y}" text-anchor="end" class="chart-label">'
                       '<title>{full}</title>{short}</text>').format(
            x=LABEL_WIDTH - 8, y=text_y, full=bar.label, short=_short(bar.label))
        if bar.href:
            label = Markup('<a href="{href}">{label}</a>').format(href=bar.href, label=label)
        parts.append(label)
        parts.append(Markup('<rect x="{x}" y="{y}" width="{bw}" height="{bh}" '
                            'class="chart-track" fill="#e8ecf1"/>').format(
            x=LABEL_WIDTH, y=y, bw=BAR_WIDTH, bh=BAR_HEIGHT))
        parts.append(Markup('<rect x="{x}" y="{y}" width="{w}" height="{bh}" class="{cls}" '
                            'fill="{fill}"><title>{cap}</title></rect>').format(
            x=LABEL_WIDTH, y=y, w=width, bh=BAR_HEIGHT,
            cls="chart-bar over" if over else "chart-bar",
            fill="#c0392b" if over else "#2f6fb0", cap=f"{bar.label}: {_caption(bar)}"))
        if bar.limit is not None:
            mark = LABEL_WIDTH + round(BAR_WIDTH * bar.limit / scale)
            parts.append(Markup('<line x1="{x}" x2="{x}" y1="{y1}" y2="{y2}" '
                                'class="chart-quota" stroke="#222" stroke-width="2">'
                                '<title>quota {q}</title></line>').format(
                x=mark, y1=y - 2, y2=y + BAR_HEIGHT + 2, q=format_size(bar.limit)))
        parts.append(Markup('<text x="{x}" y="{y}" class="chart-value">{cap}</text>').format(
            x=LABEL_WIDTH + BAR_WIDTH + 8, y=text_y, cap=_caption(bar)))
    parts.append(Markup("</svg>"))
    return Markup("").join(escape(p) for p in parts)
