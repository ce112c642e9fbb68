"""What replication leaves in the audit log: rules added and removed, runs started and
finished (action ``replication.run``, the counts or the error in the detail)."""

from __future__ import annotations

import contextlib

from registry.config import Settings
from registry.replication.model import Rule, Run

__all__ = ["finished", "rule_added", "rule_removed", "started"]


def _change(settings: Settings, action: str, detail: str) -> None:
    from registry import audit

    # The audit log is a record of what happened; a replication is not undone because
    # its record could not be written (the run's own record in the store stays).
    with contextlib.suppress(Exception):
        audit.change(settings, action, detail=detail)


def rule_added(settings: Settings, rule: Rule) -> None:
    """Log ``replicate add``."""
    _change(settings, "replication.add",
            f"name={rule.name} direction={rule.direction} url={rule.url} repos={rule.repos} "
            f"tags={rule.tags} trigger={rule.describe_trigger()} deletes={rule.deletes}")


def rule_removed(settings: Settings, name: str) -> None:
    """Log ``replicate remove``."""
    _change(settings, "replication.remove", f"name={name}")


def started(settings: Settings, rule: Rule, run: Run) -> None:
    """Log the start of a run."""
    resumed = f" resumes={run.resumed}" if run.resumed else ""
    _change(settings, "replication.start",
            f"name={rule.name} run={run.id} trigger={run.trigger}{resumed}")


def finished(settings: Settings, rule: Rule, run: Run) -> None:
    """Log the end of a run with its counts (and error)."""
    error = f" error={run.error}" if run.error else ""
    _change(settings, "replication.run",
            f"name={rule.name} run={run.id} state={run.state} manifests={run.manifests} "
            f"blobs={run.blobs} skipped={run.skipped} mounted={run.mounted} "
            f"bytes={run.bytes} deleted={run.deleted}{error}")
