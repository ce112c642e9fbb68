"""Pages from templates: one Jinja2 environment with autoescaping on for every template
(``templates/**``), and :func:`render`, which gives each page the viewer, the CSRF token
and the navigation.

Templates extend ``base.html`` and fill ``{% block title %}`` and ``{% block content %}``;
every ``<form method="post">`` includes ``{{ csrf_field() }}``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from registry.ui.session import CSRF_FIELD, Viewer, attach_session, csrf_token, viewer

TEMPLATES = Path(__file__).parent / "templates"
PREFIX = "/ui"
STATIC = PREFIX + "/static"


@dataclass(frozen=True)
class NavItem:
    """A link of the navigation bar; ``admin`` links show to logged-in viewers only."""

    label: str
    href: str
    admin: bool = False


NAV: tuple[NavItem, ...] = (
    NavItem("Projects", PREFIX + "/"),
    NavItem("Administration", PREFIX + "/admin/", admin=True),
)


def human_size(value: int | None) -> str:
    """``1536`` → ``1.5 KiB`` (binary units, one decimal)."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def when(value: float | int | str | None) -> str:
    """A UNIX time (or ISO text) as ``2026-12-06 08:33 UTC``."""
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        return value
    stamp = datetime.datetime.fromtimestamp(float(value), datetime.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def short_digest(digest: str) -> str:
    """``sha256:0123456789ab…`` (12 hex digits)."""
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:12]}" if hexpart else digest


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(size=human_size, when=when, short=short_digest)
    env.globals.update(prefix=PREFIX, static=STATIC)
    return env


ENVIRONMENT = _environment()


def nav_for(who: Viewer | None) -> list[NavItem]:
    """The navigation links ``who`` sees."""
    return [item for item in NAV if not item.admin or who is not None]


def render(request: Request, template_name: str, status: int = 200,
           **context: Any) -> HTMLResponse:
    """The page ``template_name`` with ``context`` plus ``viewer``, ``csrf``,
    ``csrf_field()``, ``nav`` and ``request`` (autoescaped; sets a new session cookie)."""
    who = viewer(request)
    token = csrf_token(request)

    def csrf_field() -> Markup:
        return Markup('<input type="hidden" name="{}" value="{}">').format(
            CSRF_FIELD, escape(token))

    page = ENVIRONMENT.get_template(template_name).render(
        request=request, viewer=who, csrf=token, csrf_field=csrf_field, nav=nav_for(who),
        path=request.url.path, **context)
    response = HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)
    return attach_session(request, response)  # type: ignore[return-value]


SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self' 'unsafe-inline'; script-src 'self'; "
                               "frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
