"""Replication on ``/metrics``: runs by rule and outcome, and what they moved, summed over
the runs kept in the store (so every server process, and runs made by the ``registry
replicate`` command, count)."""

from __future__ import annotations

from registry.config import Settings
from registry.replication.model import RUNNING, SUCCEEDED
from registry.replication.store import ReplicationStore, existing_replication_store

__all__ = ["exposition", "render"]

_COUNTERS = (
    ("registry_replication_manifests_total", "Manifests copied by replication runs.", 3),
    ("registry_replication_blobs_total", "Blobs sent by replication runs.", 4),
    ("registry_replication_blobs_skipped_total",
     "Blobs replication did not send because the destination had them.", 5),
    ("registry_replication_blobs_mounted_total",
     "Blobs replication mounted from another repository of the destination.", 6),
    ("registry_replication_bytes_total", "Blob bytes sent by replication runs.", 7),
    ("registry_replication_deleted_total", "Tags deleted by replication runs.", 8),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(store: ReplicationStore) -> str:
    """The Prometheus text of the store's runs ("" when there are none)."""
    rows = store.totals()
    if not rows:
        return ""
    lines = ["# HELP registry_replication_runs_total Replication runs by rule and state "
             "(running, succeeded, failed, interrupted).",
             "# TYPE registry_replication_runs_total counter"]
    for rule, state, runs, *_ in rows:
        lines.append(f'registry_replication_runs_total{{rule="{_label(rule)}",'
                     f'state="{state}"}} {runs}')
    for name, help_text, column in _COUNTERS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        per_rule: dict[str, int] = {}
        for row in rows:
            per_rule[row[0]] = per_rule.get(row[0], 0) + int(row[column])
        lines += [f'{name}{{rule="{_label(rule)}"}} {n}' for rule, n in per_rule.items()]
    lines += ["# HELP registry_replication_last_success_timestamp_seconds When the last "
              "successful run of a rule finished.",
              "# TYPE registry_replication_last_success_timestamp_seconds gauge"]
    lines += [f'registry_replication_last_success_timestamp_seconds{{rule="{_label(r[0])}"}} '
              f"{r[9]:.3f}" for r in rows if r[1] == SUCCEEDED]
    lines += ["# HELP registry_replication_running Replication runs in progress.",
              "# TYPE registry_replication_running gauge"]
    running: dict[str, int] = {r[0]: 0 for r in rows}
    for row in rows:
        if row[1] == RUNNING:
            running[row[0]] += row[2]
    lines += [f'registry_replication_running{{rule="{_label(r)}"}} {n}'
              for r, n in running.items()]
    return "\n".join(lines) + "\n"


def exposition(settings: Settings) -> str:
    """:func:`render` for the store of ``settings`` ("" without one)."""
    store = existing_replication_store(settings)
    if store is None:
        return ""
    try:
        return render(store)
    finally:
        store.close()
