"""The values of replication: a :class:`Rule` (what to copy where, and when) and a
:class:`Run` (one execution of a rule, with its counts), the flags' validation and the
error type of the package."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["MANUAL", "ON_PUSH", "PULL", "PUSH", "RUN_STATES", "SCHEDULE", "ReplicationError",
           "Rule", "RuleBusy", "Run", "check_name", "check_url", "format_duration",
           "parse_duration"]

PUSH = "push"
"""Direction: from this registry to the remote one (``--to``)."""
PULL = "pull"
"""Direction: from the remote registry into this one (``--from``)."""
MANUAL = "manual"
ON_PUSH = "on_push"
SCHEDULE = "schedule"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
INTERRUPTED = "interrupted"
RUN_STATES = (RUNNING, SUCCEEDED, FAILED, INTERRUPTED)
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MIN_INTERVAL = 5


class ReplicationError(ValueError):
    """A bad rule, flag or replication failure; the message names the flag or setting."""


class RuleBusy(ReplicationError):
    """The rule is being run by another (live) process."""


def check_name(name: str) -> str:
    """A rule name: lower-case letters, digits, ``.``, ``_``, ``-``, at most 64."""
    if not _NAME.match(name or ""):
        raise ReplicationError(f"NAME {name!r}: use 1-64 lower-case letters, digits, '.', "
                               "'_' or '-', starting with a letter or digit")
    return name


def check_url(url: str, flag: str) -> str:
    """An ``http(s)://HOST[:PORT]`` registry URL without path, query or credentials."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ReplicationError(f"{flag} {url!r}: not a registry URL (http://HOST[:PORT] or "
                               "https://HOST[:PORT])")
    if parts.username or parts.password:
        raise ReplicationError(f"{flag} {url!r}: credentials do not belong in the URL; "
                               "they come from the docker config.json (pybuild login "
                               f"{parts.hostname})")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ReplicationError(f"{flag} {url!r}: the port is not a number in 1..65535") \
            from None
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ReplicationError(f"{flag} {url!r}: give the registry's root URL, without a "
                               "path (repositories are chosen with --repos)")
    return f"{parts.scheme}://{parts.netloc}"


def parse_duration(text: str, flag: str = "--every") -> int:
    """``90s``, ``15m``, ``1h30m``, ``1d`` … as seconds (at least :data:`MIN_INTERVAL`)."""
    value = text.strip().lower()
    if not value or _DURATION.sub("", value):
        raise ReplicationError(f"{flag} {text!r}: not a duration (30s, 15m, 1h30m, 1d)")
    seconds = sum(int(n) * _UNITS[u] for n, u in _DURATION.findall(value))
    if seconds < MIN_INTERVAL:
        raise ReplicationError(f"{flag} {text!r}: the interval must be at least "
                               f"{MIN_INTERVAL}s")
    return seconds


def format_duration(seconds: int) -> str:
    """``seconds`` as the shortest ``1h30m``-style text."""
    out = []
    for unit in ("w", "d", "h", "m", "s"):
        n, seconds = divmod(seconds, _UNITS[unit])
        if n:
            out.append(f"{n}{unit}")
    return "".join(out) or "0s"


@dataclass(frozen=True)
class Rule:
    """A replication rule: copy the repositories matching ``repos`` and their tags matching
    ``tags`` from this registry to ``url`` (``direction`` push) or from ``url`` into this
    registry (pull), when asked (``trigger`` manual), after each push to a matching
    repository (on_push, push rules only) or every ``interval`` seconds (schedule).
    With ``deletes``, tags gone from the source are deleted from the destination.
    ``local_url`` is how the replicator reaches this registry (``""``: from ``addr``);
    ``next_at`` when a scheduled rule runs next."""

    name: str
    direction: str
    url: str
    repos: str = "**"
    tags: str = "**"
    trigger: str = MANUAL
    interval: int = 0
    deletes: bool = False
    local_url: str = ""
    created_at: float = 0.0
    next_at: float = 0.0

    @property
    def flag(self) -> str:
        """The flag that named the remote registry."""
        return "--to" if self.direction == PUSH else "--from"

    def describe_trigger(self) -> str:
        """``manual``, ``on-push`` or ``every 1h``."""
        if self.trigger == SCHEDULE:
            return f"every {format_duration(self.interval)}"
        return "on-push" if self.trigger == ON_PUSH else MANUAL


@dataclass(frozen=True)
class Run:
    """One execution of a rule: when, why (``trigger``), how it ended (``state``), what it
    did (manifests and blobs copied, blobs skipped because the destination had them,
    blobs mounted from another repository there, bytes sent, tags deleted) and the first
    error; ``resumed`` the interrupted run it took over, ``runner`` the ``host:pid`` running
    it. ``heartbeat`` is renewed while it runs; a running run whose heartbeat stopped
    was interrupted (its process died)."""

    id: int
    rule: str
    trigger: str
    state: str
    started_at: float
    finished_at: float = 0.0
    heartbeat: float = 0.0
    dry_run: bool = False
    manifests: int = 0
    blobs: int = 0
    skipped: int = 0
    mounted: int = 0
    bytes: int = 0
    deleted: int = 0
    error: str = ""
    resumed: int = 0
    runner: str = ""
