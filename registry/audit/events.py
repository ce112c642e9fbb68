"""The values of the audit log: one :class:`AuditEvent` per thing someone did, the
:class:`AuditQuery` that selects them, and the parsing of ``--since``."""

from __future__ import annotations

import datetime
import getpass
import re
import time
from dataclasses import dataclass, field

__all__ = ["DELETE", "PULL", "PUSH", "QUOTA_EXCEEDED", "AuditError", "AuditEvent",
           "AuditQuery", "local_actor", "parse_since", "project_of"]

PUSH = "push"
PULL = "pull"
DELETE = "delete"
QUOTA_EXCEEDED = "quota_exceeded"
LOCAL_ADDRESS = "local"
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class AuditError(ValueError):
    """A bad audit query or setting; the message names the argument."""


def project_of(repository: str) -> str:
    """The project of ``repository``: its first path segment (``""`` without a ``/``)."""
    head, sep, _ = repository.partition("/")
    return head if sep else ""


@dataclass(frozen=True)
class AuditEvent:
    """Who (``subject``, ``""`` for anonymous) did what (``action``: push, pull, delete,
    quota_exceeded, or a configuration change such as ``project.create``) to what
    (``repository`` and ``reference``, the tag or digest asked for; ``digest`` the manifest
    or blob concerned), from where (``address``) and when (``at``, seconds since the epoch).
    ``detail`` says more in a line (the tags of a push, a change's arguments); ``project``
    defaults to the repository's. ``host`` is the registry host the client reached (for
    webhook resource URLs; not kept in the log)."""

    action: str
    subject: str = ""
    address: str = ""
    repository: str = ""
    reference: str = ""
    digest: str = ""
    detail: str = ""
    project: str = ""
    at: float = field(default_factory=time.time)
    host: str = ""

    def __post_init__(self) -> None:
        if not self.project and self.repository:
            object.__setattr__(self, "project", project_of(self.repository))

    def as_dict(self) -> dict[str, object]:
        """The event as JSON-ready values (``time`` in ISO 8601 UTC)."""
        return {"time": iso(self.at), "action": self.action, "user": self.subject,
                "address": self.address, "project": self.project,
                "repository": self.repository, "reference": self.reference,
                "digest": self.digest, "detail": self.detail}


@dataclass(frozen=True)
class AuditQuery:
    """Which events to list: of ``project``, by ``user`` (``""`` anonymous), at or after
    ``since``, of one of ``actions`` (empty: any); the newest ``limit`` first."""

    project: str | None = None
    user: str | None = None
    since: float | None = None
    limit: int = 100
    actions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise AuditError(f"--limit must be a positive integer, not {self.limit!r}")


def iso(at: float) -> str:
    """``at`` as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_since(text: str, now: float | None = None) -> float:
    """``--since``: an ISO 8601 date or date and time (UTC unless it names a zone) or a
    duration back from now (``90s``, ``15m``, ``1h``, ``7d``, ``2w``); AuditError naming
    the argument otherwise."""
    now = time.time() if now is None else now
    value = text.strip()
    match = _DURATION.match(value)
    if match:
        return now - int(match[1]) * _UNITS[match[2]]
    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise AuditError(f"--since {text!r}: not an ISO date/time (2026-01-31, "
                         "2026-01-31T12:00:00Z) nor a duration (30m, 1h, 7d)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def local_actor() -> tuple[str, str]:
    """The subject and address of a change made with the ``registry`` command on this
    host: the operating-system user and ``local``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return user, LOCAL_ADDRESS
