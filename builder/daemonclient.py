"""The client side of the ``pybuild`` daemon: hand a command to a running daemon.

When ``pybuild daemon start`` has left a daemon running for this user (see
:mod:`builder.daemon`), a command that it serves (``build``, ``push``, ``images`` …) is not run
in this process: the command line, the environment, the working directory, the umask and the
standard streams (as file descriptors) go over the daemon's Unix socket; the daemon forks a
process that already has every module loaded, and that process runs the command with them.
This one forwards signals (Ctrl-C) to it and exits with its status. Without a daemon, with
``PYBUILD_NO_DAEMON`` set, or when the daemon runs other code than this installation's, the
command runs here as usual.

This module imports only the standard library: it runs before anything else is loaded.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Any

SERVED = frozenset({"build", "images", "inspect", "history", "tag", "rmi", "save", "load",
                    "prune", "pull", "push"})
"""Commands a daemon runs; ``run`` and ``login`` (terminals, prompts) always run here."""

SOCKET_NAME = "daemon.sock"
PACKAGES = ("builder", "layerstore", "registry")
_HEADER = struct.Struct("!I")
_PEERCRED = struct.Struct("3i")
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def daemon_dir() -> Path:
    """Where this user's daemon keeps its socket, PID and log: ``$PYBUILD_DAEMON_DIR``,
    else ``/run/pybuild`` for root, else ``$XDG_RUNTIME_DIR/pybuild`` or
    ``/tmp/pybuild-<uid>``.

    Called outside any user namespace (by the client and by ``pybuild daemon``), so the
    uid is the user's own; a rootless daemon is handed its directory on the command line.
    Whose daemon answers there is checked by :func:`same_user` on connecting."""
    explicit = os.environ.get("PYBUILD_DAEMON_DIR")
    if explicit:
        return Path(explicit)
    if os.geteuid() == 0:
        return Path("/run/pybuild")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "pybuild" if runtime else Path(f"/tmp/pybuild-{os.geteuid()}")


def same_user(sock: socket.socket) -> bool:
    """Whether the process at the other end of ``sock`` runs as this process's user.

    The kernel translates the peer's uid into the reader's user namespace: a rootless
    daemon (uid 0 of its own namespace, see :mod:`builder.rootless`) is its user to that
    user's client, and that client is 0 to the daemon; root and any other user are not.
    """
    _pid, uid, _gid = _PEERCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return uid == os.geteuid()


def fingerprint() -> str:
    """What identifies the code a process runs: the interpreter, where the packages are and
    the newest modification of any of their modules (an edit makes a running daemon
    stale)."""
    base = Path(__file__).resolve().parent.parent
    newest = count = 0
    stack = [str(base / p) for p in PACKAGES]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.name.endswith(".py"):
                    newest = max(newest, entry.stat(follow_symlinks=False).st_mtime_ns)
                    count += 1
                elif entry.is_dir(follow_symlinks=False) and entry.name != "__pycache__":
                    stack.append(entry.path)
    return f"{sys.executable}|{base}|{count}|{newest}"


def command_of(words: list[str]) -> str | None:
    """The subcommand of ``words`` (after ``--root``), as :mod:`builder.cli` reads it."""
    i = 0
    while i < len(words) and (words[i] == "--root" or words[i].startswith("--root=")):
        i += 2 if words[i] == "--root" else 1
    return words[i] if i < len(words) else None


def send(sock: socket.socket, message: dict[str, object], fds: list[int] | None = None) -> None:
    """One length-prefixed JSON message, with ``fds`` passed along (SCM_RIGHTS)."""
    data = json.dumps(message).encode()
    ancillary = []
    if fds:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
    sock.sendmsg([_HEADER.pack(len(data)) + data], ancillary)


def receive(sock: socket.socket) -> dict[str, Any] | None:
    """The next message (None when the peer closed the connection first)."""
    header = _read(sock, _HEADER.size)
    if header is None:
        return None
    body = _read(sock, _HEADER.unpack(header)[0])
    if body is None:
        return None
    message = json.loads(body)
    return message if isinstance(message, dict) else None


def _read(sock: socket.socket, n: int) -> bytes | None:
    out = b""
    while len(out) < n:
        try:
            chunk = sock.recv(n - len(out))
        except InterruptedError:
            continue
        if not chunk:
            return None
        out += chunk
    return out


def run_in_daemon(words: list[str]) -> int | None:
    """Run ``pybuild WORDS`` in this user's daemon and return its exit status; None when
    it must run here (no daemon, a command the daemon does not serve, stale code)."""
    if os.environ.get("PYBUILD_NO_DAEMON") or command_of(words) not in SERVED:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(daemon_dir() / SOCKET_NAME))
        if not same_user(sock):
            sock.close()
            return None  # another user's daemon: never hand it this user's command
        umask = os.umask(0o022)
        os.umask(umask)
        send(sock, {"argv": words, "env": dict(os.environ), "cwd": os.getcwd(),
                    "umask": umask, "fingerprint": fingerprint()}, [0, 1, 2])
        started = receive(sock)
    except OSError:
        sock.close()
        return None
    if started is None or "pid" not in started:
        sock.close()
        return None  # stale code, or a daemon shutting down
    return _wait(sock, int(started["pid"]))


def _wait(sock: socket.socket, pid: int) -> int:
    """Forward signals to the daemon's process ``pid`` until it reports its status."""
    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for signum in _FORWARDED:
        signal.signal(signum, forward)
    try:
        done = receive(sock)
    finally:
        sock.close()
    if done is None or "status" not in done:
        print("pybuild: the daemon's process ended without an exit status (see "
              f"{daemon_dir() / 'daemon.log'})", file=sys.stderr)
        return 1
    return int(done["status"])
