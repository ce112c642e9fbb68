"""The one parser of ``/proc/self/mountinfo`` (see proc(5))."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

__all__ = ["MountInfo", "mountinfo", "mounts_under", "parse_line"]


@dataclass(frozen=True)
class MountInfo:
    """One line of ``/proc/self/mountinfo``.

    ``device`` is the ``major:minor`` of the filesystem; ``options`` the per-mount options,
    ``super_options`` the per-superblock ones (an overlay's ``upperdir=…`` is there).
    """

    mount_id: int
    parent_id: int
    mount_point: str
    fstype: str
    source: str
    options: str
    device: str = ""
    root: str = "/"
    super_options: str = ""

    def super_option(self, name: str) -> str | None:
        """The value of superblock option ``name`` (``upperdir``), or None."""
        prefix = name + "="
        for option in self.super_options.split(","):
            if option.startswith(prefix):
                return option[len(prefix):]
        return None


def _unescape(field: str) -> str:
    """Undo mountinfo's ``\\ooo`` escapes of space, tab, newline and backslash."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_line(line: str) -> MountInfo:
    """Parse one line of a mountinfo file."""
    fields = line.split()
    sep = fields.index("-")
    return MountInfo(
        mount_id=int(fields[0]),
        parent_id=int(fields[1]),
        device=fields[2],
        root=_unescape(fields[3]),
        mount_point=_unescape(fields[4]),
        options=fields[5],
        fstype=fields[sep + 1],
        source=_unescape(fields[sep + 2]),
        super_options=_unescape(fields[sep + 3]) if len(fields) > sep + 3 else "",
    )


def mountinfo() -> list[MountInfo]:
    """The mounts of this process's mount namespace, in the kernel's order."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return [parse_line(line) for line in f if line.strip()]


def mounts_under(path: str | os.PathLike[str]) -> list[MountInfo]:
    """Mounts whose mount point is ``path`` or below it."""
    p = os.path.abspath(path)
    prefix = p.rstrip("/") + "/"
    return [mi for mi in mountinfo() if mi.mount_point == p or mi.mount_point.startswith(prefix)]
