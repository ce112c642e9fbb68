"""Resource limits of one run, applied as runc applies them: a cgroup of the run's own.

Lifecycle of a run's cgroup (:func:`run_cgroup`)::

    create   mkdir pybuild/<id> in each hierarchy the limits need (v1) or under the
             delegated subtree with the controllers enabled on the way down (v2)
    apply    write the limit files (memory.limit_in_bytes / memory.max, cpu quota, ...)
    join     the command's process writes "0" to each cgroup.procs file, whose descriptors
             were opened here, before it execs: everything it starts is inside
    events   after the run: how often the OOM killer struck, how many forks were refused
    remove   kill what is left, rmdir — also after a failure or a cancelled build

Nothing is created when no cgroup limit is asked for. On a cgroup v1 host (each controller
mounted as its own hierarchy under /sys/fs/cgroup) the run's cgroup is
``<hierarchy>/pybuild/<id>`` in the memory, cpu, cpuset and pids hierarchies the limits need;
on a cgroup v2 host it is ``/sys/fs/cgroup/pybuild/<id>`` as root, and as any other user
``<delegated>/pybuild/<id>`` under the highest cgroup systemd delegated to that user. Where a
limit cannot be applied the run fails with a :class:`~builder.errors.LimitError` naming
the flag and what to enable; a run never goes ahead without the limits it was given.

:class:`CgroupWriter` is the seam between the two versions: :class:`V1Writer` and
:class:`V2Writer`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from builder.errors import LimitError
from builder.limits import CPU_PERIOD, UNLIMITED, Limits, human_size
from layerstore.mountinfo import MountInfo, mountinfo

#: Where the cgroups of runs live in each hierarchy (or in the delegated subtree).
PARENT = "pybuild"
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: How long :meth:`CgroupWriter.remove` waits for the last processes of a run to go.
REMOVE_TIMEOUT = 10.0
#: An empty run cgroup whose build process is gone is removed once it is this old.
STALE_AGE = 60.0
_CONTROLLER_FIELDS = {"memory": ("memory", "memory_swap"), "cpu": ("cpus", "cpu_shares"),
                      "cpuset": ("cpuset_cpus",), "pids": ("pids_limit",)}


@dataclass(frozen=True)
class LimitEvents:
    """What the limits did to a run: OOM kills, and forks refused at the process limit."""

    oom_kills: int = 0
    forks_refused: int = 0


class CgroupWriter(Protocol):
    """One run's cgroup in one cgroup version; see the module docstring for the order of
    the calls. Every method raises :class:`~builder.errors.LimitError` with a one-line
    message when the host does not allow it."""

    def create(self) -> None:
        """Make the run's cgroup (and the ``pybuild`` parent, with the controllers the
        limits need enabled); removes the empty leftovers of build processes that died."""
        ...

    def apply(self, limits: Limits) -> None:
        """Write ``limits`` into the run's cgroup."""
        ...

    def procs_files(self) -> list[Path]:
        """The ``cgroup.procs`` files a process writes ``0`` into to join the cgroup."""
        ...

    def events(self) -> LimitEvents:
        """The OOM kills and refused forks counted so far."""
        ...

    def remove(self) -> None:
        """Kill whatever is still in the cgroups :meth:`create` made and remove them (also
        after :meth:`create` failed half-way)."""
        ...


def asked(limits: Limits, controller: str) -> str:
    """The flags (as given) that need ``controller``, for messages."""
    return ", ".join(limits.flag(f) for f in _CONTROLLER_FIELDS[controller]
                     if getattr(limits, f) is not None)


def asked_all(limits: Limits) -> str:
    """Every flag (as given) that needs a cgroup, for messages."""
    return "; ".join(asked(limits, c) for c in limits.controllers)


def _read(path: Path) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def _write(path: Path, value: str, what: str) -> None:
    """Write ``value`` into a control file (never creating it)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise LimitError(f"{what}: cannot write {value!r} to {path}: "
                         f"{exc.strerror or exc}") from None


def _counter(path: Path, key: str) -> int:
    """The value of ``key`` in a flat-keyed file (``memory.events``), 0 when absent."""
    with contextlib.suppress(OSError):
        for line in _read(path).splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    return 0


def _mkdir(path: Path, what: str, hint: str) -> None:
    try:
        path.mkdir()
    except FileExistsError:
        if path.name != PARENT:
            raise LimitError(f"{what}: the cgroup {path} exists already") from None
    except OSError as exc:
        message = exc.strerror or str(exc)
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            message += f": {hint}"
        raise LimitError(f"{what}: cannot create the cgroup {path}: {message}") from None


def _sweep(parent: Path) -> None:
    """Remove empty run cgroups whose build process is gone (a build killed with SIGKILL
    cannot remove its own); ``rmdir`` refuses any cgroup that still has a process."""
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            owner = entry.name.partition("-")[0]
            if not entry.is_dir() or not owner.isdigit() or int(owner) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if time.time() - entry.stat().st_mtime < STALE_AGE:
                    continue
                try:
                    os.kill(int(owner), 0)
                except ProcessLookupError:
                    entry.rmdir()


def _empty(path: Path, kill_file: bool) -> None:
    """Kill every process in the cgroup ``path`` and rmdir it once the kernel has let
    them go."""
    if not path.is_dir():
        return
    if kill_file and (path / "cgroup.kill").exists():
        with contextlib.suppress(LimitError):  # the loop below kills them one by one
            _write(path / "cgroup.kill", "1", "removing the cgroup")
    deadline = time.monotonic() + REMOVE_TIMEOUT
    while True:
        with contextlib.suppress(OSError, ValueError):
            for pid in _read(path / "cgroup.procs").split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise LimitError(f"cannot remove the cgroup {path}: {exc.strerror}") from None
        time.sleep(0.01)


class V1Writer:
    """A run's cgroup on cgroup v1: ``pybuild/<name>`` in the hierarchy of each controller
    the limits need (``mounts`` maps a controller to its hierarchy's mount point)."""

    def __init__(self, mounts: dict[str, Path], limits: Limits, name: str) -> None:
        self.limits = limits
        self.dirs: dict[str, Path] = {}
        self.created: list[Path] = []
        for controller in limits.controllers:
            if controller not in mounts:
                raise LimitError(
                    f"{asked(limits, controller)}: this cgroup v1 host has no {controller} "
                    f"hierarchy: mount it (mount -t cgroup -o {controller} cgroup "
                    f"{CGROUP_ROOT}/{controller}) or boot with cgroup v2")
            self.dirs[controller] = mounts[controller] / PARENT / name

    def create(self) -> None:
        """See :meth:`CgroupWriter.create`."""
        hint = ("on a cgroup v1 host only root can set resource limits (build as root, or "
                "on a cgroup v2 host with delegation)")
        for controller, path in self.dirs.items():
            what = asked(self.limits, controller)
            _mkdir(path.parent, what, hint)
            _sweep(path.parent)
            if controller == "cpuset":
                _inherit_cpuset(path.parent, what)
            _mkdir(path, what, hint)
            self.created.append(path)
            if controller == "cpuset":
                _inherit_cpuset(path, what)

    def apply(self, limits: Limits) -> None:
        """See :meth:`CgroupWriter.apply`."""
        memory = self.dirs.get("memory")
        if memory is not None and limits.memory is not None:
            what = asked(limits, "memory")
            _write(memory / "memory.limit_in_bytes", str(limits.memory), what)
            total = limits.swap_total
            if (memory / "memory.memsw.limit_in_bytes").exists():
                _write(memory / "memory.memsw.limit_in_bytes", str(total), what)
            elif limits.memory_swap not in (None, UNLIMITED):
                raise LimitError(f"{limits.flag('memory_swap')}: this kernel does not account "
                                 "swap in cgroup v1 (boot with swapaccount=1)")
        cpu = self.dirs.get("cpu")
        if cpu is not None:
            what = asked(limits, "cpu")
            if limits.cpus is not None:
                _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD), what)
                _write(cpu / "cpu.cfs_quota_us", str(_quota(limits.cpus)), what)
            if limits.cpu_shares is not None:
                _write(cpu / "cpu.shares", str(limits.cpu_shares), what)
        cpuset = self.dirs.get("cpuset")
        if cpuset is not None and limits.cpuset_cpus is not None:
            _write(cpuset / "cpuset.cpus", limits.cpuset_cpus, asked(limits, "cpuset"))
        pids = self.dirs.get("pids")
        if pids is not None and limits.pids_limit is not None:
            _write(pids / "pids.max", str(limits.pids_limit), asked(limits, "pids"))

    def procs_files(self) -> list[Path]:
        """See :meth:`CgroupWriter.procs_files`."""
        return [path / "cgroup.procs" for path in self.dirs.values()]

    def events(self) -> LimitEvents:
        """See :meth:`CgroupWriter.events`: ``oom_kill`` of memory.oom_control (before
        Linux 4.13: ``memory.failcnt`` when the kernel reports an OOM state)."""
        oom = refused = 0
        memory = self.dirs.get("memory")
        if memory is not None:
            control = memory / "memory.oom_control"
            oom = _counter(control, "oom_kill")
            if oom == 0 and "oom_kill " not in _safe_read(control):
                failcnt = _safe_read(memory / "memory.failcnt")
                oom = int(failcnt) if failcnt.isdigit() else 0
        if "pids" in self.dirs:
            refused = _counter(self.dirs["pids"] / "pids.events", "max")
        return LimitEvents(oom, refused)

    def remove(self) -> None:
        """See :meth:`CgroupWriter.remove`."""
        failures: list[LimitError] = []
        for path in self.created:
            try:
                _empty(path, kill_file=False)
            except LimitError as exc:
                failures.append(exc)
        if failures:
            raise failures[0]


def _safe_read(path: Path) -> str:
    try:
        return _read(path)
    except OSError:
        return ""


def _inherit_cpuset(path: Path, what: str) -> None:
    """A new v1 cpuset cgroup has no CPUs and no memory nodes: give it its parent's."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        if not _safe_read(path / name):
            _write(path / name, _safe_read(path.parent / name), what)


def _quota(nano_cpus: int) -> int:
    return nano_cpus * CPU_PERIOD // 1_000_000_000


def cpu_weight(shares: int) -> int:
    """cgroup v2's cpu.weight (1 to 10000) for v1 CPU shares (2 to 262144), the mapping runc and
    the kernel documentation use."""
    return 1 + ((shares - 2) * 9999) // 262142


class V2Writer:
    """A run's cgroup on cgroup v2: ``<base>/pybuild/<name>``, with the controllers the
    limits need enabled in ``base`` and in ``pybuild``."""

    def __init__(self, base: Path, limits: Limits, name: str) -> None:
        self.base = base
        self.limits = limits
        self.path = base / PARENT / name
        self.created = False

    def _what(self, controller: str | None = None) -> str:
        return asked_all(self.limits) if controller is None else asked(self.limits, controller)

    def create(self) -> None:
        """See :meth:`CgroupWriter.create`."""
        available = set(_safe_read(self.base / "cgroup.controllers").split())
        for controller in self.limits.controllers:
            if controller not in available:
                raise LimitError(
                    f"{self._what(controller)}: the cgroup v2 {controller} controller is not "
                    f"available in {self.base} (cgroup.controllers: "
                    f"{' '.join(sorted(available)) or 'none'}): enable it in the parent's "
                    "cgroup.subtree_control (systemd: Delegate=yes)")
        hint = ("resource limits need write access to the cgroup tree (as root, or in a "
                "cgroup delegated to this user)")
        self._enable(self.base)
        _mkdir(self.path.parent, self._what(), hint)
        _sweep(self.path.parent)
        self._enable(self.path.parent)
        _mkdir(self.path, self._what(), hint)
        self.created = True

    def _enable(self, path: Path) -> None:
        enabled = set(_safe_read(path / "cgroup.subtree_control").split())
        for controller in self.limits.controllers:
            if controller in enabled:
                continue
            try:
                _write(path / "cgroup.subtree_control", f"+{controller}",
                       self._what(controller))
            except LimitError as exc:
                if _safe_read(path / "cgroup.procs"):
                    raise LimitError(f"{exc}: {path} holds processes, so it cannot hand "
                                     "controllers down (run pybuild in a cgroup of its own "
                                     "below it)") from None
                raise

    def apply(self, limits: Limits) -> None:
        """See :meth:`CgroupWriter.apply`."""
        if limits.memory is not None:
            what = self._what("memory")
            _write(self.path / "memory.max", str(limits.memory), what)
            total = limits.swap_total
            swap = "max" if total == UNLIMITED or total is None else str(total - limits.memory)
            if (self.path / "memory.swap.max").exists():
                _write(self.path / "memory.swap.max", swap, what)
            elif limits.memory_swap not in (None, UNLIMITED):
                raise LimitError(f"{limits.flag('memory_swap')}: this kernel does not account "
                                 "swap in cgroups (memory.swap.max is missing)")
        if limits.cpus is not None:
            _write(self.path / "cpu.max", f"{_quota(limits.cpus)} {CPU_PERIOD}",
                   self._what("cpu"))
        if limits.cpu_shares is not None:
            _write(self.path / "cpu.weight", str(cpu_weight(limits.cpu_shares)),
                   self._what("cpu"))
        if limits.cpuset_cpus is not None:
            _write(self.path / "cpuset.cpus", limits.cpuset_cpus, self._what("cpuset"))
        if limits.pids_limit is not None:
            _write(self.path / "pids.max", str(limits.pids_limit), self._what("pids"))

    def procs_files(self) -> list[Path]:
        """See :meth:`CgroupWriter.procs_files`."""
        return [self.path / "cgroup.procs"]

    def events(self) -> LimitEvents:
        """See :meth:`CgroupWriter.events`: ``oom_kill`` of memory.events and ``max`` of
        pids.events."""
        return LimitEvents(_counter(self.path / "memory.events", "oom_kill"),
                           _counter(self.path / "pids.events", "max"))

    def remove(self) -> None:
        """See :meth:`CgroupWriter.remove` (cgroup.kill where the kernel has it)."""
        if self.created:
            _empty(self.path, kill_file=True)


def v1_hierarchies(mounts: list[MountInfo]) -> dict[str, Path]:
    """The mount point of each v1 controller's hierarchy (the first mount of it)."""
    found: dict[str, Path] = {}
    for m in mounts:
        if m.fstype != "cgroup":
            continue
        for option in m.super_options.split(","):
            found.setdefault(option, Path(m.mount_point))
    return found


def own_cgroup_v2(text: str) -> str:
    """This process's cgroup v2 path from the text of /proc/self/cgroup (its ``0::`` line)."""
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return "/"


def delegated_base(mount: Path, own: str, uid: int) -> Path:
    """The highest cgroup above (or at) ``own`` that is delegated to ``uid``: owned by it,
    with cgroup.procs and cgroup.subtree_control writable. A LimitError says how to get
    one when there is none."""
    path = mount / own.lstrip("/")
    base: Path | None = None
    while True:
        with contextlib.suppress(OSError):
            if (path.stat().st_uid == uid
                    and os.access(path / "cgroup.procs", os.W_OK)
                    and os.access(path / "cgroup.subtree_control", os.W_OK)):
                base = path
        if path == mount or mount not in path.parents:
            break
        path = path.parent
    if base is None:
        raise LimitError(f"resource limits need a cgroup delegated to uid {uid}, and {own} is "
                         "not one: run pybuild in a delegated systemd scope (systemd-run "
                         "--user --scope -p Delegate=yes pybuild ...), with cgroup v2 "
                         "delegation enabled for user@.service")
    return base


def writer_for(limits: Limits, name: str | None = None) -> CgroupWriter:
    """The writer for this host: v2 when /sys/fs/cgroup is a cgroup2 mount, else v1."""
    name = name or f"{os.getpid()}-{secrets.token_hex(4)}"
    mounts = mountinfo()
    unified = next((m for m in mounts if m.fstype == "cgroup2"
                    and Path(m.mount_point) == CGROUP_ROOT), None)
    if unified is None:
        hierarchies = v1_hierarchies(mounts)
        if not hierarchies:
            raise LimitError(f"{asked_all(limits)}: no cgroup filesystem is mounted at "
                             f"{CGROUP_ROOT}")
        return V1Writer(hierarchies, limits, name)
    if os.access(CGROUP_ROOT / "cgroup.subtree_control", os.W_OK):
        return V2Writer(CGROUP_ROOT, limits, name)
    own = own_cgroup_v2(Path("/proc/self/cgroup").read_text())
    return V2Writer(delegated_base(CGROUP_ROOT, own, os.geteuid()), limits, name)


class RunCgroup:
    """The cgroup of one run while it lasts: descriptors of its ``cgroup.procs`` files,
    which the command's process writes to (:func:`enter`), and what the limits did."""

    def __init__(self, writer: CgroupWriter, limits: Limits, fds: tuple[int, ...]) -> None:
        self.writer = writer
        self.limits = limits
        self.fds = fds

    def verdict(self, exit_code: int) -> str | None:
        """Why a run that failed with ``exit_code`` failed, when a limit made it fail:
        the OOM killer or the process limit; None otherwise."""
        if exit_code == 0:
            return None
        events = self.writer.events()
        limits = self.limits
        if events.oom_kills and limits.memory is not None:
            flags = limits.flag("memory")
            if limits.memory_swap is not None:
                flags += ", " + limits.flag("memory_swap")
            what = ("was killed by the kernel's OOM killer" if exit_code == 128 + signal.SIGKILL
                    else "failed after the kernel's OOM killer killed one of its processes")
            return f"{what}: it used up its memory limit of {human_size(limits.memory)} ({flags})"
        if events.forks_refused and limits.pids_limit is not None:
            return (f"reached its limit of {limits.pids_limit} processes "
                    f"({limits.flag('pids_limit')}): {events.forks_refused} fork(s) refused")
        return None


@contextlib.contextmanager
def run_cgroup(limits: Limits) -> Iterator[RunCgroup | None]:
    """The run's cgroup, made and limited, removed on exit; None (and nothing made) when
    ``limits`` need no cgroup."""
    if not limits.controllers:
        yield None
        return
    writer = writer_for(limits)
    failed = True
    try:
        writer.create()
        writer.apply(limits)
        fds: list[int] = []
        try:
            for path in writer.procs_files():
                fds.append(_open_procs(path, limits))
            yield RunCgroup(writer, limits, tuple(fds))
            failed = False
        finally:
            for fd in fds:
                os.close(fd)
    finally:
        try:
            writer.remove()
        except LimitError:
            if not failed:
                raise


def _open_procs(path: Path, limits: Limits) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise LimitError(f"cannot open {path}: {exc.strerror}") from None


def enter(limits: Limits, cgroup: RunCgroup | None) -> None:
    """In the command's process, before it drops privileges and execs: join the run's
    cgroup and set the ulimits. A failure is reported on stderr and ends the process with
    the sandbox's set-up status, 125."""
    try:
        for fd in cgroup.fds if cgroup is not None else ():
            os.write(fd, b"0")
    except OSError as exc:
        _fail(f"cannot join the run's cgroup: {exc.strerror}")
    for ulimit in limits.ulimits:
        soft = resource.RLIM_INFINITY if ulimit.soft == UNLIMITED else ulimit.soft
        hard = resource.RLIM_INFINITY if ulimit.hard == UNLIMITED else ulimit.hard
        try:
            resource.setrlimit(ulimit.resource, (soft, hard))
        except OSError as exc:
            _fail(f"--ulimit {ulimit}: {exc.strerror}")
        except ValueError as exc:
            _fail(f"--ulimit {ulimit}: the kernel refused it ({exc})")


def _fail(message: str) -> None:
    os.write(2, f"pybuild: {message}\n".encode())
    os._exit(125)
