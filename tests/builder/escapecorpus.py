"""The escape corpus shared by the sandbox tests run as root
(tests/builder/test_sandbox_hardening.py) and by a rootless user
(tests/builder/test_rootless_escapes.py): the attempts of ``escape/escape.c``, the binary
built from it, and the host state each attempt must leave unchanged."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from layerstore.snapshots.mount import mountinfo
from tests.peers import require

ESCAPE_C = Path(__file__).parent / "escape" / "escape.c"
#: A global, harmless kernel setting the corpus tries to change.
SYSCTL = Path("/proc/sys/kernel/printk_ratelimit")

CORPUS = [
    # (attempt, arguments after the name; {marker}, {sleeper} and {disk} are filled in)
    ("chroot", "{marker}"),
    ("mount", "proc"),
    ("mount", "sysfs"),
    ("mount", "tmpfs"),
    ("write", "/proc/sysrq-trigger b"),
    ("write", f"{SYSCTL} 9"),
    ("module", ""),
    ("userns", ""),
    ("blockdev", "{disk}"),
    ("kmsg", ""),
    ("keyctl", ""),
    ("ptrace", "{sleeper}"),
    ("ptrace-init", ""),
]


def attempt_id(attempt: str, args: str) -> str:
    """A short name of one attempt of :data:`CORPUS` (``mount-proc``, ``write-/proc/sys…``)."""
    return f"{attempt}-{args.split()[0] if args else ''}"


CORPUS_IDS = [attempt_id(a, b) for a, b in CORPUS]


def escape_command(attempt: str, args: str, *, marker: Path, sleeper: int) -> str:
    """The ``/escape`` command line of one attempt, its placeholders filled in."""
    filled = args.format(marker=marker, sleeper=sleeper, disk=host_disk())
    return f"/escape {attempt} {filled}".rstrip()


def compile_escape(directory: Path) -> Path:
    """escape/escape.c built into ``directory``, linked statically so it runs in any rootfs."""
    gcc = require("gcc")
    out = directory / "escape"
    proc = subprocess.run([gcc, "-static", "-O1", "-o", str(out), str(ESCAPE_C)],
                          capture_output=True, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"gcc failed on {ESCAPE_C}: {proc.stderr.decode()}")
    return out


#: Host mount points a leaked mount from the corpus would show at (besides the test's own
#: directory); other programs on a shared machine mount elsewhere meanwhile.
SYSTEM_MOUNTS = ("/", "/proc", "/sys", "/dev", "/etc", "/mnt")


def host_mounts(root: Path) -> list[tuple[int, str]]:
    """The host's mounts under ``root`` and at or below the system directories."""
    inside = f"{str(root).rstrip('/')}/"
    return [(m.mount_id, m.mount_point) for m in mountinfo()
            if m.mount_point.startswith(inside) or m.mount_point == "/"
            or any(m.mount_point == d or m.mount_point.startswith(d + "/")
                   for d in SYSTEM_MOUNTS[1:])]


def host_disk() -> str:
    """``major:minor`` of the device holding the host's root filesystem."""
    st = os.stat("/")
    return f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"


def read_or_empty(path: str) -> str:
    """A /proc file's text; empty where this kernel has no such file (no modules, no keys)."""
    try:
        return Path(path).read_text()
    except OSError:
        return ""


@dataclass(frozen=True)
class HostState:
    """What an escape would change on the host: the mounts near ``root`` and at the system
    directories, the sysctl the corpus writes, the loaded modules."""

    mounts: tuple[tuple[int, str], ...]
    sysctl: str
    modules: str

    @classmethod
    def now(cls, root: Path) -> HostState:
        """The host as it is now (mounts under ``root`` and the system directories)."""
        return cls(tuple(host_mounts(root)), SYSCTL.read_text(), read_or_empty("/proc/modules"))


def escape_keyring_exists() -> bool:
    """Whether the named keyring the keyctl attempt tries to join is on the host."""
    return "escape-keyring" in read_or_empty("/proc/keys")
