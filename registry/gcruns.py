"""The record of garbage collections: ``registry gc`` logs in the audit log when a run
starts (``gc.start``) and how it ended (``gc.done`` with what it removed, or ``gc.fail``
with the error), as the operating-system user at address ``local``; :func:`last_runs` reads
them back as :class:`GCRun` values, newest first (what the web UI's GC page shows).

A dry run changes nothing and is not logged. A run that was killed leaves a start without
an end: the next start closes it as ``unfinished``; the newest one reads as ``running``
(it may be, or it was killed).

``gc.done`` details are ``key=value`` words: ``manifests`` and ``blobs`` deleted,
``bytes`` freed, ``uploads`` purged, ``links`` forgotten, ``kept_blobs``, ``seconds``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from registry import audit
from registry.audit.events import AuditEvent, AuditQuery
from registry.config import Settings

__all__ = ["GC_DONE", "GC_FAILED", "GC_START", "GCRun", "done_detail", "last_runs",
           "record"]

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


def done_detail(manifests: int, blobs: int, freed: int, uploads: int, links: int,
                kept_blobs: int, seconds: float) -> str:
    """The detail of a ``gc.done`` event."""
    return (f"manifests={manifests} blobs={blobs} bytes={freed} uploads={uploads} "
            f"links={links} kept_blobs={kept_blobs} seconds={seconds:.2f}")


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


def runs_of(events: list[AuditEvent]) -> list[GCRun]:
    """Pair the ``gc.*`` events (any order) into runs, newest first."""
    runs: list[GCRun] = []
    open_run: AuditEvent | None = None
    for event in sorted(events, key=lambda e: e.at):
        if event.action == GC_START:
            if open_run is not None:
                runs.append(GCRun(open_run.at, None, UNFINISHED, open_run.subject,
                                  open_run.address))
            open_run = event
            continue
        started = open_run.at if open_run is not None else event.at
        who = open_run if open_run is not None else event
        if event.action == GC_DONE:
            runs.append(GCRun(started, event.at, DONE, who.subject, who.address,
                              _figures(event.detail)))
        elif event.action == GC_FAILED:
            runs.append(GCRun(started, event.at, FAILED, who.subject, who.address,
                              error=event.detail))
        open_run = None
    if open_run is not None:
        runs.append(GCRun(open_run.at, None, RUNNING, open_run.subject, open_run.address))
    runs.reverse()
    return runs


def last_runs(settings: Settings, limit: int = 20) -> list[GCRun]:
    """The newest ``limit`` runs logged in the audit log of ``settings``."""
    events = audit.query(settings, AuditQuery(limit=limit * 2 + 1, actions=ACTIONS))
    return runs_of(events)[:limit]
