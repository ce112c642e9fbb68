"""The record of garbage collections: ``registry gc`` logs in the audit log when a run
starts (``gc.start``) and how it ended (``gc.done`` with what it removed, or ``gc.fail``
with the error), as the operating-system user at address ``local``; :func:`last_runs` reads
them back as :class:`GCRun` values, newest first (what the web UI's GC page shows).

A dry run changes nothing and is not logged. Every detail starts with ``run=<id>``, a
random id that pairs a start with its end, also when runs overlap. A run that was killed
leaves a start without an end: it reads as ``running`` while it is the newest start (it may
be running, or it was killed), as ``unfinished`` once another run started. A run that
failed before it started collecting (another collection held the database's lock) logs only
its ``gc.fail``.

``gc.done`` details are ``key=value`` words: ``manifests`` and ``blobs`` deleted,
``bytes`` freed, ``uploads`` purged, ``links`` forgotten, ``kept_blobs``, ``seconds``.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field

from registry import audit
from registry.audit.events import AuditEvent, AuditQuery
from registry.config import Settings

__all__ = ["GC_DONE", "GC_FAILED", "GC_START", "GCRun", "done_detail", "last_runs",
           "new_run_id", "record", "runs_of"]

GC_START, GC_DONE, GC_FAILED = "gc.start", "gc.done", "gc.fail"
ACTIONS = (GC_START, GC_DONE, GC_FAILED)
RUNNING, DONE, FAILED, UNFINISHED = "running", "done", "failed", "unfinished"
log = logging.getLogger("registry.gc")


@dataclass(frozen=True)
class GCRun:
    """One garbage collection: when it started and ended (``None``: no end logged), its
    ``state`` (running, done, failed, unfinished), who ran it, and its ``figures``
    (``gc.done``'s words) or the ``error`` that stopped it."""

    started_at: float
    ended_at: float | None
    state: str
    subject: str = ""
    address: str = ""
    figures: dict[str, str] = field(default_factory=dict)
    error: str = ""

    def number(self, key: str) -> int:
        """A figure as an integer (0 when absent or not a number)."""
        try:
            return int(self.figures.get(key, "0"))
        except ValueError:
            return 0

    @property
    def seconds(self) -> float | None:
        """How long the run took, if it ended."""
        return None if self.ended_at is None else max(0.0, self.ended_at - self.started_at)


def new_run_id() -> str:
    """A random id for the events of one run."""
    return secrets.token_hex(6)


def done_detail(run: str, manifests: int, blobs: int, freed: int, uploads: int, links: int,
                kept_blobs: int, seconds: float) -> str:
    """The detail of a ``gc.done`` event of run ``run``."""
    return (f"run={run} manifests={manifests} blobs={blobs} bytes={freed} "
            f"uploads={uploads} links={links} kept_blobs={kept_blobs} seconds={seconds:.2f}")


def record(settings: Settings, action: str, detail: str = "") -> None:
    """Log ``action`` (one of :data:`ACTIONS`) of a run; a log that cannot be written is
    warned about, never fails the collection."""
    try:
        audit.change(settings, action, detail=detail)
    except Exception as exc:  # the collection itself must not fail for its record
        log.warning("registry gc: the audit log cannot record %s: %s", action,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _figures(detail: str) -> dict[str, str]:
    words = (word.partition("=") for word in detail.split())
    return {key: value for key, sep, value in words if sep}


def _run_of(event: AuditEvent) -> str:
    head = event.detail.split(" ", 1)[0]
    return head[4:] if head.startswith("run=") else ""


def _error_of(event: AuditEvent) -> str:
    return event.detail[len(_run_of(event)) + 5:] if _run_of(event) else event.detail


def runs_of(events: list[AuditEvent]) -> list[GCRun]:
    """Pair the ``gc.*`` events (any order) into runs, newest first: an end goes with the
    start of its run id (without ids, with the last start not yet ended)."""
    ordered = sorted(events, key=lambda e: e.at)
    starts = [e for e in ordered if e.action == GC_START]
    ended: dict[int, AuditEvent] = {}
    lone: list[AuditEvent] = []
    open_starts = list(starts)
    for event in ordered:
        if event.action == GC_START:
            continue
        run = _run_of(event)
        match = [s for s in open_starts if s.at <= event.at and _run_of(s) == run]
        if match:
            ended[id(match[-1])] = event
            open_starts.remove(match[-1])
        else:
            lone.append(event)
    runs: list[GCRun] = []
    newest = starts[-1] if starts else None
    for start in starts:
        end = ended.get(id(start))
        if end is None:
            state = RUNNING if start is newest else UNFINISHED
            runs.append(GCRun(start.at, None, state, start.subject, start.address))
        else:
            runs.append(_ended(start.at, start, end))
    runs.extend(_ended(end.at, end, end) for end in lone)
    runs.sort(key=lambda r: r.started_at, reverse=True)
    return runs


def _ended(started: float, who: AuditEvent, end: AuditEvent) -> GCRun:
    if end.action == GC_DONE:
        figures = _figures(end.detail)
        figures.pop("run", None)
        return GCRun(started, end.at, DONE, who.subject, who.address, figures)
    return GCRun(started, end.at, FAILED, who.subject, who.address, error=_error_of(end))


def last_runs(settings: Settings, limit: int = 20) -> list[GCRun]:
    """The newest ``limit`` runs logged in the audit log of ``settings``."""
    events = audit.query(settings, AuditQuery(limit=limit * 2 + 1, actions=ACTIONS))
    return runs_of(events)[:limit]
