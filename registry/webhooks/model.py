"""The values of webhooks: a :class:`Webhook` (where a project's events go), a
:class:`Delivery` (one event on its way to one webhook), the event types and the checks of
what ``registry webhook add`` is given."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["DELETE_ARTIFACT", "DELIVERED", "EVENT_NAMES", "FAILED", "PENDING",
           "PUSH_ARTIFACT", "QUOTA_EXCEED", "Delivery", "Webhook", "WebhookError",
           "check_name", "check_url", "parse_events"]

PUSH_ARTIFACT = "PUSH_ARTIFACT"
DELETE_ARTIFACT = "DELETE_ARTIFACT"
QUOTA_EXCEED = "QUOTA_EXCEED"
EVENT_NAMES = {"push": PUSH_ARTIFACT, "delete": DELETE_ARTIFACT,
               "quota_exceeded": QUOTA_EXCEED}
"""The names ``--events`` takes and the Harbor event type each stands for."""

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class WebhookError(ValueError):
    """A bad webhook argument, or a webhook that does not exist or exists already; the
    message names the argument."""


@dataclass(frozen=True)
class Webhook:
    """Events of ``project`` of the types ``events`` are POSTed to ``url``, signed with
    ``secret`` (``""``: unsigned)."""

    id: int
    project: str
    name: str
    url: str
    events: tuple[str, ...]
    secret: str
    created_at: float

    def wants(self, event_type: str) -> bool:
        """Whether this webhook takes events of ``event_type``."""
        return event_type in self.events


@dataclass(frozen=True)
class Delivery:
    """One event for one webhook: its ``payload`` (the JSON body), its ``state`` (pending,
    delivered, failed), the ``attempts`` made, when the next is due (``next_at``), the last
    response code and error."""

    id: int
    webhook_id: int
    event_type: str
    payload: str
    state: str
    attempts: int
    next_at: float
    response_code: int | None
    last_error: str
    created_at: float
    updated_at: float


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host; WebhookError naming ``--url``
    otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookError(f"--url {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(f"--url {url!r}: not an http:// or https:// URL with a host")
    if any(c.isspace() for c in url) or (port is not None and port == 0):
        raise WebhookError(f"--url {url!r}: malformed URL")
    return url


def parse_events(text: str) -> tuple[str, ...]:
    """``--events``: comma-separated names of :data:`EVENT_NAMES`; the Harbor types."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if not names:
        raise WebhookError("--events: name at least one of " + ", ".join(EVENT_NAMES))
    types: list[str] = []
    for name in names:
        kind = EVENT_NAMES.get(name) or (name.upper() if name.upper() in
                                         EVENT_NAMES.values() else None)
        if kind is None:
            raise WebhookError(f"--events: unknown event {name!r} (known: "
                               f"{', '.join(EVENT_NAMES)})")
        if kind not in types:
            types.append(kind)
    return tuple(types)


def check_name(name: str, what: str = "--name") -> str:
    """A webhook or project name: lower-case letters, digits, ``.``, ``_``, ``-``."""
    if not _NAME.match(name):
        raise WebhookError(f"{what} {name!r}: use 1-64 lower-case letters, digits, '.', "
                           "'_' or '-', starting with a letter or digit")
    return name
