"""A RUN executor built on Linux namespaces and pivot_root.

The calling process forks a helper that unshares mount, UTS, IPC and PID namespaces (and a
network namespace unless ``network="host"``) and forks the namespace's PID 1: a tiny init that
mounts ``/proc``, ``/dev``, ``/sys`` and the ``/etc`` files on the rootfs, pivots into it,
waits for the network (:mod:`builder.executor.network`), forks the command (confined as
:mod:`builder.executor.hardening` says) and reaps every
process until the command exits. All mounts live in the
helper's private mount namespace, so they vanish with it; when PID 1 exits the kernel kills
whatever is left in the PID namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import posixpath
import select
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError
from builder.executor import cgroups, hardening, network
from builder.executor.protocol import BindMount, RunResult, RunSpec, TmpfsMount
from builder.limits import DEFAULT_SHM_SIZE
from layerstore import syscalls
from layerstore.rootpath import resolve as resolve_path
from layerstore.syscalls import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_STRICTATIME,
)

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

#: Exit code reported when the sandbox itself could not be set up.
SETUP_FAILED = 125
TAIL_SIZE = 4096
_CANCEL_POLL = 0.2
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)
_ETC_FILES = ("hosts", "resolv.conf", "hostname")


_libc = syscalls.libc


def _mount(source: str | None, target: str | Path, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    syscalls.mount(source, target, fstype, flags, data)


def _parse_user(user: str) -> tuple[int, int]:
    uid, _, gid = user.partition(":")
    try:
        return int(uid), int(gid or uid)
    except ValueError:
        raise BuildError(f"user {user!r} must be numeric uid:gid") from None


def _inside(rootfs: Path, path: str) -> Path:
    """``path`` (absolute, container view) under ``rootfs``, every component resolved inside
    the rootfs (:func:`layerstore.rootpath.resolve`), so a mount never lands outside it."""
    try:
        return resolve_path(rootfs, path)
    except OSError as exc:
        raise BuildError(f"mount target {path!r}: {exc.strerror}") from None


@dataclass(frozen=True)
class _Planned:
    """One mount PID 1 makes on the rootfs: a bind mount (``fstype`` None; read-only when
    ``flags`` has MS_RDONLY) or a filesystem. ``point``, when set, is the container path of a
    mount point that lies inside an earlier mount, so PID 1 creates it (a directory when
    ``directory``) once that mount is in place."""

    source: str
    target: Path
    fstype: str | None = None
    flags: int = 0
    data: str | None = None
    point: str | None = None
    directory: bool = True


def _depth(path: str) -> int:
    return len([p for p in path.split("/") if p not in ("", ".")])


def _nested(path: str, parent: str) -> bool:
    """Whether ``path`` lies strictly below ``parent`` (both normalized, absolute)."""
    return path != parent and path.startswith(parent.rstrip("/") + "/")


def _make_point(target: Path, directory: bool) -> bool:
    """Create the mount point ``target`` (a directory, or an empty file) unless it exists;
    True when it was made."""
    if target.exists():
        return False
    if directory:
        target.mkdir()
    else:
        target.touch()
    return True


class _MountPoints:
    """Creates missing mount-point files and directories in the rootfs and removes exactly
    those afterwards, so none of them ends up in a layer."""

    def __init__(self, rootfs: Path) -> None:
        self.rootfs = rootfs
        self.created: list[Path] = []

    def ensure(self, path: str, directory: bool) -> Path:
        target = _inside(self.rootfs, path)
        missing: list[Path] = []
        parent = target.parent
        while parent != self.rootfs and not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for d in reversed(missing):
            d.mkdir()
            self.created.append(d)
        if _make_point(target, directory):
            self.created.append(target)
        return target

    def remove(self) -> None:
        for path in reversed(self.created):
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()
                else:
                    path.unlink()
        self.created.clear()


def _write_stdout(data: bytes) -> None:
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(data.decode(errors="replace"))
        sys.stdout.flush()
    else:
        buffer.write(data)
        buffer.flush()


class NamespaceExecutor:
    """Runs commands in fresh mount, PID, UTS and IPC namespaces pivoted into a rootfs.

    ``output`` receives the command's combined stdout and stderr as it arrives (default: this
    process's stdout); ``timeout`` (seconds) kills a run that takes longer, which then reports
    exit code 137; so does setting ``cancel`` (checked a few times a second).
    """

    def __init__(self, output: Callable[[bytes], None] | None = None,
                 timeout: float | None = None, cancel: threading.Event | None = None) -> None:
        self.output = output or _write_stdout
        self.timeout = timeout
        self.cancel = cancel

    def run(self, spec: RunSpec, rootfs: Path) -> RunResult:
        """Run ``spec`` with ``rootfs`` (a mounted, writable directory) as ``/``."""
        if not spec.args:
            raise BuildError("RUN needs a command")
        rootfs = Path(os.path.abspath(rootfs))
        uid, gid = _parse_user(spec.user)
        hardening.prepare(spec.security)
        network.check_available(spec.network)
        points = _MountPoints(rootfs)
        with tempfile.TemporaryDirectory(prefix="pybuild-run-") as tmp:
            try:
                mounts = self._prepare(spec, rootfs, Path(tmp), points)
                with cgroups.run_cgroup(spec.limits) as cgroup:
                    result = self._spawn(spec, rootfs, mounts, uid, gid, cgroup)
                    if cgroup is not None:
                        result = RunResult(result.exit_code, result.output_tail,
                                           cgroup.verdict(result.exit_code))
                    return result
            finally:
                points.remove()

    def _prepare(self, spec: RunSpec, rootfs: Path, tmp: Path,
                 points: _MountPoints) -> list[_Planned]:
        """Mount points and host files; returns the mounts PID 1 makes after /proc, /dev
        and /sys."""
        for d in ("proc", "dev", "sys"):
            points.ensure(d, directory=True)
        planned: list[_Planned] = []
        for name, data in network.etc_files(spec).items():
            src = tmp / name
            src.write_bytes(data)
            src.chmod(0o644)
            try:
                target = points.ensure(f"/etc/{name}", directory=False)
            except BuildError:
                continue  # a symlinked /etc file stays as the image has it
            planned.append(_Planned(str(src), target))
        placed = ["/dev"]  # a tmpfs of PID 1's: mount points below it are made in it
        for m in sorted(spec.extra_mounts, key=lambda m: _depth(m.target)):
            planned.append(_plan_extra(m, rootfs, points, placed))
        return planned

    def _spawn(self, spec: RunSpec, rootfs: Path, mounts: list[_Planned],
               uid: int, gid: int, cgroup: cgroups.RunCgroup | None) -> RunResult:
        read_fd, write_fd = os.pipe()
        pid_r, pid_w = os.pipe()
        net = network.RunNetwork(spec)
        try:
            pid = os.fork()
        except BaseException:
            for fd in (read_fd, write_fd, pid_r, pid_w):
                os.close(fd)
            net.in_parent()
            net.close()
            raise
        if pid == 0:
            code = SETUP_FAILED
            try:
                os.close(read_fd)
                os.close(pid_r)
                net.in_child()
                code = _helper(spec, rootfs, mounts, uid, gid, write_fd, pid_w, cgroup,
                               net)
            except BaseException as exc:
                with contextlib.suppress(BaseException):
                    os.write(write_fd, f"pybuild: sandbox setup failed: {exc}\n".encode())
            finally:
                os._exit(code)
        os.close(write_fd)
        os.close(pid_w)
        net.in_parent()
        child = _Child(pid)
        ended = False
        try:
            child.watch_init(pid_r)
            net.start(child.init_pid, child.init_fd)
            tail = self._pump(read_fd, child)
            status = _wait(pid)
            # PID 1 exits only once every process of its namespace is gone.
            ended = status is not None and (child.init_fd is None or bool(
                select.select([child.init_fd], [], [], 0)[0]))
        except BaseException:
            child.kill()
            _wait(pid)
            raise
        finally:
            net.close(reuse=ended)
            child.close()
            os.close(read_fd)
            os.close(pid_r)
        return RunResult(status if status is not None else 128 + signal.SIGKILL, tail)

    def _pump(self, fd: int, child: _Child) -> bytes:
        """Stream the pipe to ``output`` until EOF; kill the run when the timeout passes."""
        tail = bytearray()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        cancelled = False
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self.cancel is not None:
                wait = _CANCEL_POLL if wait is None else min(wait, _CANCEL_POLL)
            ready, _, _ = select.select([fd], [], [], wait)
            if self.cancel is not None and self.cancel.is_set() and not cancelled:
                child.kill()
                cancelled = True
            if not ready:
                if deadline is not None and time.monotonic() >= deadline:
                    child.kill()
                    deadline = None
                continue
            data = os.read(fd, 65536)
            if not data:
                return bytes(tail)
            self.output(data)
            tail += data
            del tail[:-TAIL_SIZE]


def _plan_extra(m: BindMount | TmpfsMount, rootfs: Path, points: _MountPoints,
                placed: list[str]) -> _Planned:
    """Plan one extra mount; its mount point is made now in the rootfs, or later by PID 1
    when it lies inside an extra mount already ``placed``."""
    if not os.path.isabs(m.target):
        raise BuildError(f"mount target {m.target!r} must be absolute")
    path = "/" + posixpath.normpath(m.target).lstrip("/")
    if isinstance(m, TmpfsMount):
        source, directory, fstype, flags = "tmpfs", True, "tmpfs", MS_NOSUID
        data = None if m.size is None else f"size={m.size}"
    else:
        source, directory, fstype = m.source, os.path.isdir(m.source), None
        flags, data = (MS_RDONLY if m.readonly else 0), None
    if any(_nested(path, p) for p in placed):
        target, point = _inside(rootfs, m.target), m.target
    else:
        target, point = points.ensure(m.target, directory=directory), None
    placed.append(path)
    return _Planned(source, target, fstype, flags, data, point, directory)


class _Child:
    """The forked helper and, once it reports it, a pidfd for the namespace's PID 1."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.init_pid: int | None = None
        self.init_fd: int | None = None

    def watch_init(self, fd: int) -> None:
        """Read PID 1's host pid from the helper (nothing if setup failed first)."""
        data = b""
        while len(data) < 4:
            chunk = os.read(fd, 4 - len(data))
            if not chunk:
                return
            data += chunk
        self.init_pid = struct.unpack("i", data)[0]
        with contextlib.suppress(ProcessLookupError):
            self.init_fd = os.pidfd_open(self.init_pid)

    def kill(self) -> None:
        """SIGKILL PID 1, which takes its whole PID namespace along and lets the helper exit;
        before PID 1 exists, SIGKILL the helper's process group instead."""
        if self.init_fd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.init_fd, signal.SIGKILL)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        """Release the pidfd."""
        if self.init_fd is not None:
            os.close(self.init_fd)
            self.init_fd = None


def _wait(pid: int) -> int | None:
    """Reap ``pid``; its exit code, 128+signal, or None when it is already gone."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _helper(spec: RunSpec, rootfs: Path, mounts: list[_Planned], uid: int,
            gid: int, out_fd: int, pid_fd: int, cgroup: cgroups.RunCgroup | None,
            net: network.RunNetwork) -> int:
    """In the forked child: new namespaces, then fork PID 1 and pass on its status."""
    os.setsid()
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    os.close(null)
    flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID
    if net.enter():
        flags |= CLONE_NEWNET
    syscalls.unshare(flags)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    lifeline, alive = os.pipe()
    init = os.fork()
    if init == 0:
        code = SETUP_FAILED
        try:
            os.close(pid_fd)
            os.close(alive)
            code = _init(spec, rootfs, mounts, uid, gid, lifeline, cgroup, net.gate)
        except BaseException as exc:
            with contextlib.suppress(BaseException):
                os.write(2, f"pybuild: sandbox setup failed: {exc}\n".encode())
        finally:
            os._exit(code)
    os.close(lifeline)
    os.write(pid_fd, struct.pack("i", init))
    os.close(pid_fd)
    status = _wait(init)
    return SETUP_FAILED if status is None else status


def _setup_root(spec: RunSpec, rootfs: Path, mounts: list[_Planned]) -> None:
    """Mount /proc, /dev, /sys and then the planned mounts on ``rootfs``."""
    _mount("proc", rootfs / "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    dev = rootfs / "dev"
    _mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")
    for name in _DEVICES:
        (dev / name).touch()
        _mount(f"/dev/{name}", dev / name, None, MS_BIND)
    (dev / "pts").mkdir()
    _mount("devpts", dev / "pts", "devpts", MS_NOSUID | MS_NOEXEC,
           "newinstance,ptmxmode=0666,mode=0620,gid=5")
    (dev / "shm").mkdir()
    _mount("shm", dev / "shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
           f"mode=1777,size={spec.limits.shm_size or DEFAULT_SHM_SIZE}")
    (dev / "mqueue").mkdir()
    with contextlib.suppress(OSError):  # a kernel without POSIX message queues
        _mount("mqueue", dev / "mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for name, target in _DEV_LINKS:
        (dev / name).symlink_to(target)
    sys_flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    try:
        _mount("sysfs", rootfs / "sys", "sysfs", sys_flags)
    except OSError:
        _mount("/sys", rootfs / "sys", None, MS_BIND | MS_REC)
        _mount(None, rootfs / "sys", None, MS_REMOUNT | MS_BIND | sys_flags)
    for m in mounts:
        if m.point is not None:
            point = _inside(rootfs, m.point)
            point.parent.mkdir(parents=True, exist_ok=True)
            _make_point(point, m.directory)
        if m.fstype is not None:
            _mount(m.source, m.target, m.fstype, m.flags, m.data)
            continue
        _mount(m.source, m.target, None, MS_BIND | MS_REC)
        if m.flags & MS_RDONLY:
            _mount(None, m.target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _init(spec: RunSpec, rootfs: Path, mounts: list[_Planned], uid: int,
          gid: int, lifeline: int, cgroup: cgroups.RunCgroup | None,
          gate: int) -> int:
    """PID 1: set up the root, start the command, reap everything, forward signals.

    ``lifeline`` is a pipe whose write end only the helper holds: EOF means it already died;
    ``gate`` opens when the network is up (:class:`~builder.executor.network.RunNetwork`).
    """
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if select.select([lifeline], [], [], 0)[0]:
        return SETUP_FAILED
    os.close(lifeline)
    name_buf = ctypes.create_string_buffer(b"pybuild-init")
    _libc.prctl(PR_SET_NAME, ctypes.addressof(name_buf), 0, 0, 0)
    hardening.bind_self(rootfs, spec.security)
    _setup_root(spec, rootfs, mounts)
    hardening.harden_root(rootfs, spec.security)
    hardening.pivot_into(rootfs)
    name = spec.hostname.encode()
    syscalls.sethostname(name)
    if network.needs_namespace(spec.network):
        _loopback_up()
    os.makedirs(spec.cwd, exist_ok=True)
    if not network.wait_gate(gate):
        os.write(2, b"pybuild: sandbox setup failed: the network did not come up\n")
        return SETUP_FAILED
    command = os.fork()
    if command == 0:
        try:
            _exec(spec, uid, gid, cgroup)
        finally:
            os._exit(SETUP_FAILED)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(command, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return SETUP_FAILED
        if pid == command:
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.WEXITSTATUS(status)


def _exec(spec: RunSpec, uid: int, gid: int, cgroup: cgroups.RunCgroup | None) -> None:
    """In the command's process: join the run's cgroup, set the ulimits, confine it
    (:mod:`builder.executor.hardening`), drop to the user, enter cwd and exec; never
    returns."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    cgroups.enter(spec.limits, cgroup)
    try:
        hardening.confine(spec.security)
        os.setgroups(list(spec.groups))
        os.setgid(gid)
        os.setuid(uid)
        hardening.drop_caps(spec.security, uid)
        os.chdir(spec.cwd)
    except OSError as exc:
        os.write(2, f"pybuild: cannot set up the process: {exc}\n".encode())
        os._exit(SETUP_FAILED)
    env = _env_map(spec.env)
    try:
        if "/" in spec.args[0]:
            os.execve(spec.args[0], spec.args, env)
        for d in env.get("PATH", DEFAULT_PATH).split(":"):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError, PermissionError):
                os.execve(os.path.join(d or ".", spec.args[0]), spec.args, env)
        raise FileNotFoundError(errno.ENOENT, "executable file not found in $PATH")
    except OSError as exc:
        os.write(2, f"pybuild: exec {spec.args[0]}: {exc.strerror}\n".encode())
        os._exit(127 if exc.errno in (errno.ENOENT, errno.ENOTDIR) else 126)


def _env_map(env: tuple[str, ...]) -> dict[str, str]:
    return dict(e.partition("=")[::2] for e in env)
