"""A fixed CPU budget for a process, as a host of that size would give it: a cgroup of its
own with a CFS bandwidth limit (cgroup v1: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``
under ``/sys/fs/cgroup/cpu``; cgroup v2: ``cpu.max``), removed afterwards. Root only.

    with cpu_budget("bench-r0", 0.25) as budget:
        budget.add(pid)
        ...                     # the process gets at most 0.25 CPU per period
        budget.throttled()      # (periods, periods in which it hit the limit)
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

V1_ROOT = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 10_000  # a short period: the quota comes in slices of a few ms, not one 100 ms


class BudgetError(RuntimeError):
    """No cgroup CPU controller to use (not root, or neither v1 nor v2 offers it)."""


@dataclass(frozen=True)
class CpuBudget:
    """A cgroup limiting the processes put in it to ``cpus`` CPUs together."""

    path: Path
    cpus: float
    quota_us: int
    period_us: int
    version: int

    def describe(self) -> str:
        """The budget as it was set, for the benchmark's output."""
        if self.version == 1:
            return (f"{self.cpus:g} CPU (cgroup v1 cpu.cfs_quota_us {self.quota_us} / "
                    f"cpu.cfs_period_us {self.period_us})")
        return f"{self.cpus:g} CPU (cgroup v2 cpu.max \"{self.quota_us} {self.period_us}\")"

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads; its later children follow) into the
        budget."""
        (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def throttled(self) -> tuple[int, int]:
        """``(periods, throttled periods)`` so far: how often the processes used the whole
        quota and had to wait."""
        stat = dict(line.split()[:2] for line in
                    (self.path / "cpu.stat").read_text().splitlines() if line.strip())
        return int(stat.get("nr_periods", 0)), int(stat.get("nr_throttled", 0))


def _root() -> tuple[Path, int]:
    if (V1_ROOT / "cpu.cfs_quota_us").exists():
        return V1_ROOT, 1
    if (V2_ROOT / "cgroup.controllers").exists():
        if "cpu" not in (V2_ROOT / "cgroup.controllers").read_text().split():
            raise BudgetError(f"{V2_ROOT}: the cpu controller is not available")
        with contextlib.suppress(OSError):
            (V2_ROOT / "cgroup.subtree_control").write_text("+cpu\n")
        return V2_ROOT, 2
    raise BudgetError("no cgroup cpu controller under /sys/fs/cgroup")


@contextlib.contextmanager
def cpu_budget(name: str, cpus: float, period_us: int = PERIOD_US) -> Iterator[CpuBudget]:
    """A new cgroup ``name`` limited to ``cpus`` CPUs for the ``with`` block; afterwards
    whatever is still in it goes back to the root group and the cgroup is removed."""
    if os.geteuid() != 0:
        raise BudgetError("a CPU budget needs root (cgroups)")
    if cpus <= 0:
        raise BudgetError(f"a CPU budget must be positive, not {cpus}")
    root, version = _root()
    path = root / name
    quota = max(1000, round(cpus * period_us))
    path.mkdir()
    try:
        if version == 1:
            (path / "cpu.cfs_period_us").write_text(f"{period_us}\n")
            (path / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        else:
            (path / "cpu.max").write_text(f"{quota} {period_us}\n")
        yield CpuBudget(path, cpus, quota, period_us, version)
    finally:
        _remove(path, root)


def _remove(path: Path, root: Path) -> None:
    """Move what is left to ``root``, then remove the (empty) cgroup; an exiting process
    may linger for a moment."""
    for _ in range(50):
        with contextlib.suppress(OSError):
            for pid in (path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (root / "cgroup.procs").write_text(f"{pid}\n")
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
    path.rmdir()
