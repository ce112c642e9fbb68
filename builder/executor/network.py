"""The network of a run: a namespace of its own, the user-mode stack that connects it, and
the ``/etc/hosts`` and ``/etc/resolv.conf`` it sees.

``default`` gives every run a fresh network namespace joined to the outside by
``slirp4netns``: a TAP device ``tap0`` (10.0.2.100/24, gateway 10.0.2.2, MTU 65520) whose
packets a user-mode TCP/IP stack turns into ordinary sockets of the host. slirp4netns runs
with ``--disable-host-loopback`` (10.0.2.2 does not lead to the host's 127.0.0.1) and
``--disable-dns`` (no forwarder at 10.0.2.3 that would reach a resolver on the host's
loopback), so nothing that listens only on the host's loopback is reachable; it sandboxes
itself (``--enable-sandbox``, ``--enable-seccomp``). It is chosen over pasta because it
starts faster (about 5 ms to a configured interface here, pasta about 35 ms), tells when
it is ready on a file descriptor and exits when another one closes, and gives the run an
interface of its own rather than a copy of the host's.

``none`` is a namespace with only ``lo``; ``host`` is the host's own namespace.

The run's ``/etc/resolv.conf`` on the default network is the host's with the nameservers a
container cannot reach removed (loopback ones, and IPv6 ones: the stack is IPv4 only), and
Google's public resolvers when none is left, as BuildKit and docker do; a host whose
``/etc/resolv.conf`` names only systemd-resolved's stub (127.0.0.53) is read from
``/run/systemd/resolve/resolv.conf``, the upstream servers it uses.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

from builder.errors import BuildError
from builder.executor.protocol import ExtraHost, Network, RunSpec
from layerstore.syscalls import libc

SLIRP4NETNS = "slirp4netns"
#: slirp4netns runs in a mount namespace of its own whose mounts are slaves of the host's.
#: Its sandbox (--enable-sandbox) unshares a mount namespace, makes only ``/`` private and
#: lazily unmounts the old root after pivot_root; where ``/run/netns`` is a shared mount
#: (``ip netns add`` and podman make it one), that unmount reached the host's peer and took
#: away every named network namespace mounted there (podman's and CNI's among them)
#: whenever a run started. Unmounts in a slave do not propagate to its master.
ISOLATE_MOUNTS = ("unshare", "--mount", "--propagation", "slave")
#: The address of the run on the default network, and its gateway.
ADDRESS = "10.0.2.100"
GATEWAY = "10.0.2.2"
MTU = 65520
SLIRP_OPTIONS = ("--configure", f"--mtu={MTU}", "--disable-host-loopback", "--disable-dns",
                 "--enable-sandbox", "--enable-seccomp")
#: How long the stack may take to come up before the run fails.
READY_TIMEOUT = 30.0
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
RESOLV_CONF = Path("/etc/resolv.conf")
SYSTEMD_RESOLV_CONF = Path("/run/systemd/resolve/resolv.conf")
SYSTEMD_STUB = "127.0.0.53"
HOST_GATEWAY = "host-gateway"

CLONE_NEWNET = 0x40000000
#: Prepare the next run's network namespace and stack while a run goes on (off only for
#: measurements and tests of the direct path).
PREPARE_AHEAD = True
SYS_PIDFD_GETFD = 438
TUNATTACHFILTER = 0x401054D5  # _IOW('T', 213, struct sock_fprog)
TUN_DEVICE = os.makedev(10, 200)
#: Classic BPF run on every frame the run sends into tap0 (jumps count from the next line).
#: libslirp connects to whatever address a packet names, so a run that can route packets
#: for 127.0.0.1 out of tap0 (CAP_NET_ADMIN) or write raw frames (CAP_NET_RAW) would reach
#: the host's loopback despite --disable-host-loopback; the filter lets ARP through, drops
#: IPv4 to 127.0.0.0/8 and 0.0.0.0/8 (which connects to the loopback too) and drops every
#: other protocol (the stack is IPv4 only). Only slirp4netns holds the TAP device, so the
#: run cannot detach it.
LOOPBACK_FILTER = (
    (0x28, 0, 0, 12),            # ldh [12]: the ethertype
    (0x15, 5, 0, 0x0806),        # ARP: accept
    (0x15, 0, 5, 0x0800),        # not IPv4: drop
    (0x20, 0, 0, 30),            # ld [30]: the IPv4 destination
    (0x54, 0, 0, 0xFF000000),    # and #255.0.0.0
    (0x15, 2, 0, 0x7F000000),    # 127.0.0.0/8: drop
    (0x15, 1, 0, 0),             # 0.0.0.0/8: drop
    (0x06, 0, 0, 0xFFFFFFFF),    # accept
    (0x06, 0, 0, 0),             # drop
)

_exiting: list[subprocess.Popen[bytes]] = []
_exiting_lock = threading.Lock()


def needs_namespace(network: Network) -> bool:
    """Whether a run on ``network`` gets a network namespace of its own."""
    return network != "host"


def check_available(network: Network) -> None:
    """Fail before anything starts when ``network`` needs a program this host lacks."""
    if network == "default" and shutil.which(SLIRP4NETNS) is None:
        raise BuildError(f"--network=default needs {SLIRP4NETNS} on PATH (Debian: apt-get "
                         f"install {SLIRP4NETNS}); --network=none runs without a network")
    if network == "default" and shutil.which(ISOLATE_MOUNTS[0]) is None:
        raise BuildError(f"--network=default needs {ISOLATE_MOUNTS[0]} on PATH (Debian: "
                         "util-linux); --network=none runs without a network")


# --- /etc/hosts -----------------------------------------------------------------------------

def parse_extra_host(value: str, flag: str = "--add-host") -> ExtraHost:
    """``--add-host`` as docker reads it: ``NAME:ADDRESS`` or ``NAME=ADDRESS``, the address
    IPv4, IPv6 (optionally in brackets) or ``host-gateway`` (the host's own address, as the
    default network reaches it)."""
    name, sep, address = value.partition("=")
    if not sep:
        name, sep, address = value.partition(":")
    if not sep or not name or not address:
        raise BuildError(f"{flag} {value}: expected HOST:IP (or HOST=IP)")
    if any(c.isspace() for c in name) or name.startswith("#"):
        raise BuildError(f"{flag} {value}: {name!r} is not a host name")
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    if address == HOST_GATEWAY:
        return ExtraHost(name, host_gateway(f"{flag} {value}"))
    try:
        return ExtraHost(name, str(ipaddress.ip_address(address)))
    except ValueError:
        raise BuildError(f"{flag} {value}: {address!r} is not an IP address "
                         f"(or {HOST_GATEWAY})") from None


def parse_extra_hosts(values: list[str] | tuple[str, ...],
                      flag: str = "--add-host") -> tuple[ExtraHost, ...]:
    """Every ``--add-host`` value, in order."""
    return tuple(parse_extra_host(v, flag) for v in values)


def host_gateway(where: str) -> str:
    """The host's address on its default route: what ``host-gateway`` stands for. A run on
    the default network reaches the host's non-loopback services there."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("8.8.8.8", 53))  # a route lookup only: UDP connect sends nothing
        except OSError:
            raise BuildError(f"{where}: this host has no default route, so no address for "
                             f"{HOST_GATEWAY}; give an IP address instead") from None
        address: str = s.getsockname()[0]
    return address


def hosts_file(spec: RunSpec) -> bytes:
    """The run's ``/etc/hosts``: localhost and the run's host name (the host's own file on
    the host network), then a line per extra host."""
    if spec.network == "host":
        try:
            text = Path("/etc/hosts").read_text(errors="replace")
        except OSError:
            text = ""
        if text and not text.endswith("\n"):
            text += "\n"
    else:
        text = (f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                f"127.0.1.1\t{spec.hostname}\n")
    text += "".join(f"{h.address}\t{h.name}\n" for h in spec.extra_hosts)
    return text.encode()


# --- /etc/resolv.conf -----------------------------------------------------------------------

def resolv_conf(network: Network, source: Path = RESOLV_CONF,
                systemd: Path = SYSTEMD_RESOLV_CONF) -> bytes:
    """The run's ``/etc/resolv.conf``: empty on the none network, the host's on the host
    network, and on the default network the host's with only reachable nameservers."""
    if network == "none":
        return b""
    try:
        text = source.read_text(errors="replace")
    except OSError:
        text = ""
    if network == "host":
        return text.encode()
    if _nameservers(text) == [SYSTEMD_STUB]:
        with contextlib.suppress(OSError):
            text = systemd.read_text(errors="replace")
    return _for_user_network(text).encode()


def _nameservers(text: str) -> list[str]:
    return [f[1] for f in (line.split() for line in text.splitlines())
            if len(f) >= 2 and f[0] == "nameserver"]


def _for_user_network(text: str) -> str:
    """``text`` without the nameservers the default network cannot reach, with the public
    fallback when none is left; search, options and other lines are kept."""
    kept: list[str] = []
    others: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith(("#", ";")):
            continue
        if fields[0] != "nameserver":
            others.append(line.strip())
            continue
        if len(fields) < 2:
            continue
        try:
            address = ipaddress.ip_address(fields[1].partition("%")[0])
        except ValueError:
            continue
        if address.version == 4 and not address.is_loopback:
            kept.append(str(address))
    if not kept:
        kept = list(FALLBACK_NAMESERVERS)
    return "".join(f"nameserver {ns}\n" for ns in kept) + "".join(f"{o}\n" for o in others)


def etc_files(spec: RunSpec) -> dict[str, bytes]:
    """The files bind-mounted over ``/etc/hosts``, ``/etc/resolv.conf`` and ``/etc/hostname``
    of a run."""
    return {"hosts": hosts_file(spec), "resolv.conf": resolv_conf(spec.network),
            "hostname": f"{spec.hostname}\n".encode()}


# --- the stack ------------------------------------------------------------------------------

class RunNetwork:
    """The network side of one run.

    Made before the sandbox forks. On the default network it takes the namespace prepared
    ahead (:data:`PREPARE_AHEAD`: connected, filtered, unused) when there is one, which the
    sandbox joins (:meth:`enter`); otherwise the sandbox makes a namespace and, once its
    PID 1 exists, :meth:`start` connects it while the sandbox's own setup runs. ``gate`` is
    a pipe whose read end PID 1 keeps and waits on (:func:`wait_gate`) before it starts the
    command; :meth:`start` opens it. :meth:`close` stops the stack without waiting for the
    kernel to tear down its device, and from a process's second run on (a build, not a
    lone ``pybuild run``) has the next namespace prepared.
    """

    def __init__(self, spec: RunSpec) -> None:
        self.network = spec.network
        # A run with every capability may have changed its namespace's configuration.
        self.reusable = spec.security != "insecure"
        self.namespace: int | None = None
        self._stack: _Slirp | None = None
        if self.network == "default" and PREPARE_AHEAD:
            prepared = _spares.take()
            if prepared is not None:
                self.namespace, self._stack = prepared
        self.gate, self._open = os.pipe()

    def in_child(self) -> int:
        """In the forked sandbox: drop the parent's end; returns the gate to wait on."""
        os.close(self._open)
        return self.gate

    def enter(self) -> bool:
        """In the forked sandbox, before it unshares its namespaces: join the prepared
        namespace; True when the sandbox is to make a network namespace itself."""
        if self.namespace is None:
            return needs_namespace(self.network)
        if libc.setns(self.namespace, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into the prepared network: {os.strerror(err)}")
        os.close(self.namespace)
        return False

    def in_parent(self) -> None:
        """In the calling process after the fork: drop the sandbox's end."""
        os.close(self.gate)

    def start(self, pid: int | None, pidfd: int | None) -> None:
        """Connect the namespace of PID 1 (``pid``, also open as ``pidfd``) unless it was
        prepared, and open the gate. Nothing is started when PID 1 never came to be or is
        already gone: the sandbox reports why. Raises :class:`BuildError` when the stack
        fails."""
        if self.network == "default" and self._stack is None and pid is not None \
                and pidfd is not None:
            self._stack = _Slirp.start(pid, pidfd)
            if self._stack is not None and PREPARE_AHEAD:
                self.namespace = _own_namespace(pid, pidfd)
        with contextlib.suppress(BrokenPipeError):
            os.write(self._open, b"1")

    def close(self, reuse: bool = False) -> None:
        """With ``reuse`` (the run ended and its PID 1, which outlives every process of the
        run, is gone), hand the namespace and its stack on to the next run when this run
        could not have changed them (without CAP_NET_ADMIN it could alter no address, route
        or rule), as BuildKit's pool of network namespaces does; otherwise stop the stack
        (if any) and release the namespace. Then close the gate, and have the next run's
        namespace prepared if none is."""
        if (reuse and self._stack is not None and self.namespace is not None and self.reusable
                and _spares.give_back(self.namespace, self._stack)):
            self._stack, self.namespace = None, None
        if self._stack is not None:
            self._stack.stop()
            self._stack = None
        if self.namespace is not None:
            os.close(self.namespace)
            self.namespace = None
        with contextlib.suppress(OSError):
            os.close(self._open)
        if self.network == "default" and PREPARE_AHEAD and _spares.note_run() > 1:
            _spares.refill()


class _Spares:
    """At most one network namespace prepared ahead, made by a background thread: the
    thread unshares a network namespace for itself alone, keeps a descriptor of it and
    returns to its own; slirp4netns is started on it and the filter attached. The next run
    on the default network joins it instead of waiting for a stack to start."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ready: tuple[int, _Slirp] | None = None
        self.pending: int | None = None
        self.busy = False
        self.runs = 0

    def note_run(self) -> int:
        """Count a finished run on the default network; how many there have been."""
        with self.lock:
            self.runs += 1
            return self.runs

    def after_fork_in_child(self) -> None:
        """In a forked child (a sandbox among them): the prepared namespace is the parent's,
        for a later run; close this process's descriptors of it, so that nothing a run
        starts can reach it through its PID 1."""
        self.lock = threading.Lock()
        for fd in (self.pending, self.ready[0] if self.ready else None):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.ready, self.pending, self.busy = None, None, False

    def give_back(self, namespace: int, stack: _Slirp) -> bool:
        """Keep a used namespace whose stack still runs for the next run, unless one is
        ready already; whether it was kept."""
        if stack.process.poll() is not None:
            return False
        with self.lock:
            if self.ready is not None:
                return False
            self.ready = (namespace, stack)
            return True

    def take(self) -> tuple[int, _Slirp] | None:
        """The prepared namespace and its stack, if one is ready and its stack alive."""
        with self.lock:
            ready, self.ready = self.ready, None
        if ready is not None and ready[1].process.poll() is not None:
            os.close(ready[0])
            return None
        return ready

    def refill(self) -> None:
        """Have a namespace prepared unless one is ready or being made."""
        with self.lock:
            if self.ready is not None or self.busy:
                return
            self.busy = True
        threading.Thread(target=self._make, name="pybuild-netns", daemon=True).start()

    def _make(self) -> None:
        made: tuple[int, _Slirp] | None = None
        try:
            ns = _unshared_namespace()
            with self.lock:
                self.pending = ns
            try:
                stack = _Slirp._spawn(ns)
            except BaseException:
                with self.lock:
                    self.pending = None
                os.close(ns)
                raise
            made = (ns, stack)
        except Exception:
            made = None  # the next run takes the direct path, which reports what fails
        finally:
            with self.lock:
                self.busy = False
                self.pending = None
                if made is not None and self.ready is None:
                    self.ready, made = made, None
            if made is not None:
                made[1].stop()
                os.close(made[0])


def _own_namespace(pid: int, pidfd: int) -> int | None:
    """A descriptor of the network namespace of ``pid`` (open as ``pidfd``), or None when
    that process is gone and the namespace opened may not be its own."""
    try:
        ns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    if select.select([pidfd], [], [], 0)[0]:
        os.close(ns)
        return None
    return ns


def _unshared_namespace() -> int:
    """A descriptor of a new network namespace, made by this thread for itself; the thread
    is back in its own namespace on return."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        # Joining the namespace we are in needs what the way back needs (CAP_SYS_ADMIN over
        # its owner: a rootless build lacks it for the host's): find out before leaving.
        if libc.setns(own, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns: {os.strerror(err)}")
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare: {os.strerror(err)}")
        try:
            return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                os.abort()  # a thread left in a foreign network namespace cannot go on
    finally:
        os.close(own)


_spares = _Spares()
os.register_at_fork(after_in_child=_spares.after_fork_in_child)


def wait_gate(gate: int) -> bool:
    """In PID 1: wait until the network is up; False when the caller gave up instead."""
    try:
        return os.read(gate, 1) == b"1"
    finally:
        os.close(gate)


class _Slirp:
    """One slirp4netns process serving one network namespace."""

    def __init__(self, process: subprocess.Popen[bytes], exit_w: int) -> None:
        self.process = process
        self.exit_w = exit_w

    @classmethod
    def start(cls, pid: int, pidfd: int) -> _Slirp | None:
        """Start slirp4netns on the network namespace of ``pid`` and wait until it has
        configured ``tap0``; None when that process is already gone."""
        try:
            ns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, ProcessLookupError):
            return None
        try:
            if select.select([pidfd], [], [], 0)[0]:
                return None  # exited: the namespace opened may not be the run's
            if os.fstat(ns).st_ino == os.stat("/proc/self/ns/net").st_ino:
                raise BuildError("the run's network namespace is the host's; refusing to "
                                 "configure it")
            return cls._spawn(ns)
        finally:
            os.close(ns)

    @classmethod
    def _spawn(cls, ns: int) -> _Slirp:
        _reap()
        ready_r, ready_w = os.pipe()
        exit_r, exit_w = os.pipe()
        try:
            with tempfile.TemporaryFile(prefix="pybuild-slirp-") as err:
                try:
                    process = subprocess.Popen(
                        [*ISOLATE_MOUNTS, SLIRP4NETNS, *SLIRP_OPTIONS, f"--ready-fd={ready_w}",
                         f"--exit-fd={exit_r}", "--netns-type=path", f"/proc/self/fd/{ns}",
                         "tap0"],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                        pass_fds=(ready_w, exit_r, ns))
                except OSError as exc:
                    os.close(exit_w)
                    raise BuildError(f"cannot start {SLIRP4NETNS}: {exc.strerror}") from None
                os.close(ready_w)
                ready_w = -1
                stack = cls(process, exit_w)
                if not _ready(ready_r, process):
                    stack.stop()
                    err.seek(0)
                    raise BuildError(_failure(err.read()))
                try:
                    guard_loopback(process.pid)
                except OSError as exc:
                    stack.stop()
                    raise BuildError(f"the default network could not be set up: cannot "
                                     f"filter its TAP device: {exc}") from None
                return stack
        finally:
            for fd in (ready_r, ready_w, exit_r):
                if fd >= 0:
                    os.close(fd)

    def stop(self) -> None:
        """Kill the stack; it is reaped later, as the kernel removes its TAP device."""
        with contextlib.suppress(OSError):
            os.close(self.exit_w)
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        with _exiting_lock:
            _exiting.append(self.process)


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def guard_loopback(pid: int) -> None:
    """Attach :data:`LOOPBACK_FILTER` to the TAP device the slirp4netns ``pid`` serves (a
    duplicate of its descriptor is taken with pidfd_getfd, used once and closed)."""
    pidfd = os.pidfd_open(pid)
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                st = os.stat(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            if st.st_rdev == TUN_DEVICE and (st.st_mode & 0o170000) == 0o020000:
                tap = libc.syscall(ctypes.c_long(SYS_PIDFD_GETFD), ctypes.c_long(pidfd),
                                   ctypes.c_long(int(name)), ctypes.c_long(0))
                if tap < 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"pidfd_getfd: {os.strerror(err)}")
                try:
                    _attach(tap)
                finally:
                    os.close(tap)
                return
    finally:
        os.close(pidfd)
    raise OSError(0, f"{SLIRP4NETNS} holds no TAP device")


def _attach(tap: int) -> None:
    program = (_SockFilter * len(LOOPBACK_FILTER))(*(_SockFilter(*i) for i in LOOPBACK_FILTER))
    fprog = _SockFprog(len(LOOPBACK_FILTER), ctypes.cast(program, ctypes.POINTER(_SockFilter)))
    fcntl.ioctl(tap, TUNATTACHFILTER, bytes(fprog))


def _ready(fd: int, process: subprocess.Popen[bytes]) -> bool:
    """Whether slirp4netns reported ready on ``fd`` before exiting or timing out."""
    ready, _, _ = select.select([fd], [], [], READY_TIMEOUT)
    return bool(ready) and os.read(fd, 1) == b"1" and process.poll() is None


TUN_PATH = "/dev/net/tun"


def _failure(stderr: bytes) -> str:
    text = stderr.decode(errors="replace")
    if f'open("{TUN_PATH}"): Permission denied' in text:
        mode = ""
        with contextlib.suppress(OSError):
            mode = f" (it is mode {os.stat(TUN_PATH).st_mode & 0o777:04o})"
        return (f"the default network could not be set up: {TUN_PATH} is not open to this "
                f"user{mode}: make it mode 0666 as udev does (chmod 0666 {TUN_PATH} as "
                "root), or build with --network=none")
    lines = [line for line in text.splitlines() if line.strip() and "tapfd" not in line]
    detail = lines[-1].strip() if lines else "it exited before the network was up"
    return f"the default network could not be set up: {SLIRP4NETNS}: {detail}"


def _reap() -> None:
    """Reap the stacks of earlier runs that have exited by now."""
    with _exiting_lock:
        _exiting[:] = [p for p in _exiting if p.poll() is None]
