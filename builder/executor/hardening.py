"""What makes a RUN step as confined as a docker container: pivot_root, capabilities, seccomp,
masked and read-only ``/proc`` paths.

The sandbox (:mod:`builder.executor.sandbox`) calls in at these points:

* :func:`prepare` in the calling process: the seccomp program is compiled (once);
* :func:`bind_self` in PID 1 before anything is mounted: the rootfs becomes a mount point of
  its own, ``nodev``;
* :func:`harden_root` in PID 1 once ``/proc``, ``/dev``, ``/sys`` and the extra mounts are on
  the rootfs: docker's masked paths (a ``/dev/null`` bind over files, an empty read-only tmpfs
  over directories) and read-only paths, then :func:`pivot_into` the rootfs — pivot_root and a
  lazy unmount of the old root, so no path and no ``chroot`` leads back to the host's root;
* :func:`confine` in the command's process before it changes user: the bounding set cut to
  docker's default 14 capabilities and docker's default seccomp filter loaded;
* :func:`drop_caps` after it changed user: effective, permitted and inheritable sets as
  docker leaves them (the 14 for uid 0, none for any other user), no ambient capabilities.

``security="insecure"`` (``RUN --security=insecure`` with the ``security.insecure``
entitlement) keeps every capability, loads no filter and masks nothing, as BuildKit's insecure
mode does; the root is entered with pivot_root all the same.

no_new_privs stays off, as in docker's and BuildKit's default: a setuid binary in the image
still works (up to the bounding set).
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
from pathlib import Path

from builder.executor import seccomp
from builder.executor.protocol import Security
from layerstore import syscalls
from layerstore.syscalls import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
)

#: Docker's default capabilities, by number (linux/capability.h).
DEFAULT_CAPS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
    "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29,
    "CAP_SETFCAP": 31,
}
#: The set as a mask, as /proc/PID/status prints it (``00000000a80425fb``).
DEFAULT_MASK = sum(1 << n for n in DEFAULT_CAPS.values())

#: Docker's masked paths: unreadable in the container (those missing here are skipped).
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
#: Docker's read-only paths.
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217,
                   "riscv64": 41}


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32))


_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong)
_libc.syscall.restype = ctypes.c_long


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


@functools.cache
def last_cap() -> int:
    """The highest capability number this kernel knows."""
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 40


def _mount(source: str | None, target: Path, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    syscalls.mount(source, target, fstype, flags, data)


def bind_self(rootfs: Path, security: Security) -> None:
    """Make ``rootfs`` a mount point of its own (pivot_root needs one), before anything is
    mounted on it. In the sandbox it is ``nodev``: a device node the command makes (mknod is
    one of docker's capabilities) lands in the layer but cannot be opened, the part of
    docker's device cgroup that keeps a container off the host's disks."""
    _mount(str(rootfs), rootfs, None, MS_BIND | MS_REC)
    if security != "insecure":
        _mount(None, rootfs, None, MS_REMOUNT | MS_BIND | MS_NODEV)


def harden_root(rootfs: Path, security: Security) -> None:
    """Mask and write-protect docker's ``/proc`` and ``/sys`` paths on ``rootfs`` (nothing in
    insecure mode)."""
    if security == "insecure":
        return
    for path in MASKED_PATHS:
        target = rootfs / path.lstrip("/")
        if target.is_symlink() or not target.exists():
            continue
        if target.is_dir():
            _mount("tmpfs", target, "tmpfs", MS_RDONLY)
        else:
            _mount("/dev/null", target, None, MS_BIND)
    for path in READONLY_PATHS:
        target = rootfs / path.lstrip("/")
        if target.is_symlink() or not target.exists():
            continue
        _mount(str(target), target, None, MS_BIND | MS_REC)
        _mount(None, target, None,
               MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def pivot_into(rootfs: Path) -> None:
    """Make ``rootfs`` (a mount point) this mount namespace's root and detach the old root
    from it, leaving the process in the new ``/``."""
    number = _SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(f"pivot_root: unknown system call number on {platform.machine()}")
    os.chdir(rootfs)
    # pivot_root(".", "."): the old root ends up stacked under the new one at "/", where
    # a lazy unmount takes it (and every host mount below it) away.
    _check(_libc.syscall(number, b".", b"."), "pivot_root")
    syscalls.umount(".", MNT_DETACH)
    os.chdir("/")


def prepare(security: Security) -> None:
    """In the calling process, before the sandbox forks: build what :func:`confine` loads
    (once per process), so a missing binding is a clean error here."""
    if security != "insecure":
        seccomp.default_program()
        last_cap()


def confine(security: Security) -> None:
    """Before the command's process changes user: cut the bounding set to the default
    capabilities and load docker's default seccomp filter (nothing in insecure mode).

    The filter is loaded while the process still holds CAP_SYS_ADMIN, so no_new_privs is
    not needed."""
    if security == "insecure":
        return
    program = seccomp.default_program()
    for cap in range(last_cap() + 1):
        if not DEFAULT_MASK & (1 << cap):
            _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"dropping capability {cap}")
    seccomp.load(program)


def drop_caps(security: Security, uid: int) -> None:
    """After the process changed user: the default capabilities effective and permitted for
    uid 0 (none for another user, whose sets the kernel already cleared), no inheritable or
    ambient capabilities (nothing in insecure mode)."""
    if security == "insecure":
        return
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0),
           "clearing ambient capabilities")
    mask = DEFAULT_MASK if uid == 0 else 0
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)(_CapData(mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, 0),
                          _CapData(mask >> 32, mask >> 32, 0))
    _check(_libc.capset(ctypes.byref(header), data), "setting capabilities")
