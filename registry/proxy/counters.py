"""The cache's counters on ``/metrics``: hits, misses, upstream errors and bytes fetched.

As with :mod:`registry.metrics`, each server process keeps its own counts and leaves a
snapshot in ``<metrics_dir>/proxy/<pid>.json``; rendering adds up the snapshots of the
processes that are alive, so the numbers cover every worker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

KINDS = ("manifest", "blob")
_NAMES = {
    "hits": ("registry_proxy_hits_total",
             "Pull-through cache requests answered from the cache, by kind."),
    "misses": ("registry_proxy_misses_total",
               "Pull-through cache requests that fetched from the upstream, by kind."),
    "errors": ("registry_proxy_upstream_errors_total",
               "Upstream requests of the pull-through cache that failed."),
    "bytes": ("registry_proxy_fetched_bytes_total",
              "Blob and manifest bytes the pull-through cache fetched from upstreams."),
}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ProxyCounters:
    """This process's cache counters (module docstring); thread-safe."""

    def __init__(self, directory: Path | None) -> None:
        self._directory = directory
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        if directory is not None:
            with contextlib.suppress(OSError):
                directory.mkdir(parents=True, exist_ok=True)

    def _add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n
        self.flush()

    def hit(self, kind: str) -> None:
        """A request answered from the cache."""
        self._add(f"hits:{kind}")

    def miss(self, kind: str) -> None:
        """A request that had to fetch from the upstream."""
        self._add(f"misses:{kind}")

    def error(self) -> None:
        """An upstream request that failed."""
        self._add("errors:")

    def fetched(self, size: int) -> None:
        """``size`` bytes fetched from an upstream."""
        self._add("bytes:", size)

    def snapshot(self) -> dict[str, int]:
        """This process's counts."""
        with self._lock:
            return dict(self._counts)

    def flush(self) -> None:
        """Leave this process's snapshot for the others to add up."""
        if self._directory is None:
            return
        target = self._directory / f"{os.getpid()}.json"
        tmp = target.with_suffix(f".{threading.get_ident()}.tmp")
        try:
            tmp.write_text(json.dumps(self.snapshot()))
            os.replace(tmp, target)
        except OSError as exc:
            log.warning("cannot write cache counters %s: %s", target, exc)

    def collect(self) -> dict[str, int]:
        """The counts of every live process sharing the directory."""
        total = self.snapshot()
        if self._directory is None:
            return total
        own = f"{os.getpid()}.json"
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self._directory):
                name = entry.name
                if not name.endswith(".json") or name == own:
                    continue
                stem = name[:-5]
                if not stem.isdigit() or not _pid_alive(int(stem)):
                    continue
                try:
                    counts = json.loads(Path(entry.path).read_text())
                except (OSError, ValueError):
                    continue
                if isinstance(counts, dict):
                    for key, n in counts.items():
                        if isinstance(n, int):
                            total[key] = total.get(key, 0) + n
        return total

    def render(self) -> str:
        """The counters in the Prometheus text format."""
        counts = self.collect()
        lines: list[str] = []
        for group in ("hits", "misses"):
            name, help_text = _NAMES[group]
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            for kind in KINDS:
                lines.append(f'{name}{{kind="{kind}"}} {counts.get(f"{group}:{kind}", 0)}')
        for group in ("errors", "bytes"):
            name, help_text = _NAMES[group]
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter",
                      f"{name} {counts.get(f'{group}:', 0)}"]
        return "\n".join(lines) + "\n"
