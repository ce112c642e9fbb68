"""Request metrics in the Prometheus text format.

Each server process counts its own requests in memory and leaves a snapshot in
``<metrics_dir>/<pid>.json`` (about once a second, and whenever it answers ``/metrics``);
``/metrics`` adds up the snapshots of every process, so the numbers cover all workers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Counts:
    """Counters of one process, or their sum over several."""

    requests: dict[tuple[str, str, int], int] = field(default_factory=dict)
    duration: dict[str, list[float]] = field(default_factory=dict)
    sent: int = 0
    received: int = 0

    def add(self, other: Counts) -> None:
        """Add ``other`` into these counts."""
        for key, n in other.requests.items():
            self.requests[key] = self.requests.get(key, 0) + n
        for route, (total, count) in other.duration.items():
            mine = self.duration.setdefault(route, [0.0, 0])
            mine[0] += total
            mine[1] += count
        self.sent += other.sent
        self.received += other.received

    def to_json(self) -> bytes:
        """A compact JSON snapshot."""
        return json.dumps({
            "requests": [[m, r, s, n] for (m, r, s), n in self.requests.items()],
            "duration": self.duration, "sent": self.sent, "received": self.received,
        }).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Counts:
        """Parse a snapshot written by :meth:`to_json`."""
        doc = json.loads(raw)
        return cls(
            requests={(str(m), str(r), int(s)): int(n) for m, r, s, n in doc["requests"]},
            duration={str(k): [float(v[0]), int(v[1])] for k, v in doc["duration"].items()},
            sent=int(doc["sent"]), received=int(doc["received"]),
        )


class Metrics:
    """This process's request counters; see the module docstring for the sharing."""

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory
        self._counts = Counts()
        self._dirty = False
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def observe(self, method: str, route: str, status: int, sent: int, received: int,
                seconds: float) -> None:
        """Count one answered request."""
        if method not in _METHODS:
            method = "OTHER"
        counts = self._counts
        key = (method, route, status)
        counts.requests[key] = counts.requests.get(key, 0) + 1
        slot = counts.duration.get(route)
        if slot is None:
            slot = counts.duration[route] = [0.0, 0]
        slot[0] += seconds
        slot[1] += 1
        counts.sent += sent
        counts.received += received
        self._dirty = True

    def flush(self) -> None:
        """Write this process's snapshot if anything changed since the last one."""
        if self._directory is None or not self._dirty:
            return
        self._dirty = False
        target = self._directory / f"{os.getpid()}.json"
        tmp = target.with_suffix(".tmp")
        try:
            tmp.write_bytes(self._counts.to_json())
            os.replace(tmp, target)
        except OSError as exc:
            log.warning("cannot write metrics snapshot %s: %s", target, exc)

    def collect(self) -> Counts:
        """The counts of every server process sharing the directory (this one's are current)."""
        if self._directory is None:
            return self._counts
        self.flush()
        total = Counts()
        own = f"{os.getpid()}.json"
        total.add(self._counts)
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self._directory):
                if not entry.name.endswith(".json") or entry.name == own:
                    continue
                try:
                    total.add(Counts.from_json(Path(entry.path).read_bytes()))
                except (OSError, ValueError, KeyError, TypeError, IndexError):
                    continue
        return total

    def render(self, gauges: Mapping[str, tuple[str, float]] | None = None) -> str:
        """The Prometheus text exposition of :meth:`collect` plus ``gauges``
        (name → (help, value))."""
        counts = self.collect()
        lines = [
            "# HELP registry_http_requests_total HTTP requests answered, by method, route "
            "and status.",
            "# TYPE registry_http_requests_total counter",
        ]
        for (method, route, status), n in sorted(counts.requests.items()):
            lines.append(
                f'registry_http_requests_total{{method="{method}",route="{route}",'
                f'status="{status}"}} {n}'
            )
        lines += [
            "# HELP registry_http_request_duration_seconds Time spent answering requests.",
            "# TYPE registry_http_request_duration_seconds summary",
        ]
        for route, (total, count) in sorted(counts.duration.items()):
            lines.append(f'registry_http_request_duration_seconds_sum{{route="{route}"}} '
                         f"{total:.6f}")
            lines.append(f'registry_http_request_duration_seconds_count{{route="{route}"}} '
                         f"{count}")
        lines += [
            "# HELP registry_http_sent_bytes_total Response body bytes sent.",
            "# TYPE registry_http_sent_bytes_total counter",
            f"registry_http_sent_bytes_total {counts.sent}",
            "# HELP registry_http_received_bytes_total Request body bytes received.",
            "# TYPE registry_http_received_bytes_total counter",
            f"registry_http_received_bytes_total {counts.received}",
        ]
        for name, (help_text, value) in sorted((gauges or {}).items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        return "\n".join(lines) + "\n"


def reset_directory(directory: Path) -> None:
    """Remove the snapshots of earlier server runs (called once before workers start)."""
    directory.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(directory):
        if entry.name.endswith((".json", ".tmp")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
