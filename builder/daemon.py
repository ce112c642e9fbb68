"""``pybuild daemon``: a resident process that runs commands with every module loaded.

A Python command spends a good part of a short build importing its modules. As BuildKit's
``buildkitd`` stays resident for ``buildctl``, ``pybuild daemon start`` leaves a process that
has imported them once and then serves requests on a Unix socket in
:func:`~builder.daemonclient.daemon_dir` (mode 0700, this user's only; the peer's uid is
checked). For each request it forks: the child takes the client's standard streams, working
directory, environment, umask and command line, runs :func:`builder.cli.run_command` and
sends back the exit status, so each command starts from the same clean state and nothing
stays behind between builds. The daemon itself opens no store, no database and no thread.

A request from code other than what the daemon loaded (another interpreter or installation,
or an edited module) is refused and the daemon exits; the client then runs the command in
its own process. ``pybuild daemon stop`` ends it (SIGTERM); builds in progress finish.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.daemonclient import (
    SOCKET_NAME,
    command_of,
    daemon_dir,
    fingerprint,
    same_user,
    send,
)

PRELOAD = (
    "builder.cli", "builder.api", "builder.commands.build", "builder.solver.scheduler",
    "builder.executor.sandbox", "builder.exporters.image", "builder.outputs",
    "builder.frontend.convert", "builder.graph.compile", "builder.fileops.copy",
    "builder.transfer", "builder.remotecache", "builder.gc", "registry.client.push",
    "registry.client.pull", "layerstore.layerblob", "layerstore.diff",
    "builder.commands.images", "builder.commands.inspect", "builder.commands.history",
    "builder.commands.tag", "builder.commands.rmi", "builder.commands.save",
    "builder.commands.load", "builder.commands.prune", "builder.commands.pull",
    "builder.commands.push",
)
"""What a build, a push and the image commands import (loaded once, before serving)."""

PID_NAME = "daemon.pid"
LOG_NAME = "daemon.log"
START_TIMEOUT = 30.0
REAP_INTERVAL = 5.0


class _Stop(Exception):
    """SIGTERM: stop serving."""


@dataclass(frozen=True)
class Request:
    """What a client asks a daemon to run, and in which setting."""

    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str
    umask: int
    fingerprint: str

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> Request:
        """The request in a client's message (ValueError when it is malformed)."""
        try:
            argv, env = doc["argv"], doc["env"]
            if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv)
                    and isinstance(env, dict)
                    and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
                raise TypeError
            return cls(tuple(argv), dict(env), str(doc["cwd"]), int(doc["umask"]),
                       str(doc["fingerprint"]))
        except (KeyError, TypeError, ValueError):
            raise ValueError("malformed request") from None


def serve(directory: Path) -> int:
    """Load the modules, then serve requests on ``directory/daemon.sock`` until SIGTERM.

    Run by a user other than root, the daemon first enters that user's namespace
    (:mod:`builder.rootless`), so each command it forks runs rootless as it would alone;
    only that user's clients are served (the peer's uid is 0 there, anyone else's not).
    """
    from builder import rootless
    from builder.errors import BuildError

    try:
        if rootless.needed():
            rootless.enter()
        _own_directory(directory)
    except BuildError as exc:
        print(f"pybuild daemon: {exc}", flush=True)
        return 1
    for name in PRELOAD:
        importlib.import_module(name)
    code = fingerprint()
    path = directory / SOCKET_NAME
    temp = directory / f".{SOCKET_NAME}.{os.getpid()}"
    temp.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(temp))
    os.chmod(temp, 0o600)
    listener.listen(64)
    listener.settimeout(REAP_INTERVAL)  # wake up now and then to reap finished children
    os.replace(temp, path)
    (directory / PID_NAME).write_text(f"{os.getpid()}\n")

    def stop(_signum: int, _frame: object) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"pybuild daemon: serving on {path} (pid {os.getpid()})", flush=True)
    try:
        while True:
            _reap()
            try:
                conn, _ = listener.accept()
            except (InterruptedError, TimeoutError):
                continue
            conn.settimeout(None)
            with conn:
                if not _serve_one(conn, listener, code):
                    print("pybuild daemon: a client runs other code; stopping", flush=True)
                    return 0
    except _Stop:
        return 0
    finally:
        listener.close()
        _remove_own(directory)


def _own_directory(directory: Path) -> None:
    """Make ``directory`` (mode 0700), refusing one that another user owns."""
    from builder.errors import BuildError

    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if directory.lstat().st_uid != os.geteuid() or directory.is_symlink():
            raise BuildError(f"socket directory {directory} belongs to another user; set "
                             "PYBUILD_DAEMON_DIR or --dir to a directory of your own")
        os.chmod(directory, 0o700)
    except OSError as exc:
        raise BuildError(f"socket directory {directory}: {exc.strerror}") from None


def _remove_own(directory: Path) -> None:
    """Remove the socket and PID file when they are still this process's."""
    pid_file = directory / PID_NAME
    with contextlib.suppress(OSError, ValueError):
        if int(pid_file.read_text()) == os.getpid():
            (directory / SOCKET_NAME).unlink(missing_ok=True)
            pid_file.unlink(missing_ok=True)


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _serve_one(conn: socket.socket, listener: socket.socket, code: str) -> bool:
    """Fork a process for the request on ``conn``; False when the client's code differs."""
    if not same_user(conn):
        return True
    try:
        request, fds = _receive_request(conn)
    except (OSError, ValueError):
        return True
    try:
        if request.fingerprint != code:
            return False
        if len(fds) != 3:
            return True
        child = os.fork()
        if child == 0:
            listener.close()
            os._exit(_child(conn, request, fds))
        print(f"pybuild daemon: pid {child} runs {command_of(list(request.argv))}", flush=True)
        return True
    finally:
        for fd in fds:
            os.close(fd)


def _receive_request(conn: socket.socket) -> tuple[Request, list[int]]:
    """The request and the descriptors that came with it."""
    fds: list[int] = []
    header, ancillary, _flags, _addr = conn.recvmsg(
        struct.calcsize("!I"), socket.CMSG_LEN(3 * 4))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            count = len(data) // 4
            fds.extend(struct.unpack(f"{count}i", data[:count * 4]))
    if len(header) != 4:
        raise ValueError("short request")
    size = struct.unpack("!I", header)[0]
    body = b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ValueError("short request")
        body += chunk
    try:
        doc = json.loads(body)
    except ValueError:
        for fd in fds:
            os.close(fd)
        raise
    if not isinstance(doc, dict):
        doc = {}
    try:
        return Request.parse(doc), fds
    except ValueError:
        for fd in fds:
            os.close(fd)
        raise


def _child(conn: socket.socket, request: Request, fds: list[int]) -> int:
    """In the forked process: become the client's command and run it."""
    status = 1
    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT
                          else signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        _reopen_stdio()
        os.chdir(request.cwd)
        os.umask(request.umask)
        os.environ.clear()
        os.environ.update(request.env)
        words = list(request.argv)
        sys.argv = ["pybuild", *words]
        send(conn, {"pid": os.getpid()})
        from builder.cli import run_command

        try:
            status = run_command(words)
        except SystemExit as exit_:  # argparse: --help, a usage error
            status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None
                                                                        else 2)
            if isinstance(exit_.code, str):
                print(exit_.code, file=sys.stderr)
        except KeyboardInterrupt:
            print("pybuild: interrupted", file=sys.stderr)
            status = 130
    except BaseException as exc:
        with contextlib.suppress(Exception):
            print(f"pybuild: {exc}", file=sys.stderr)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        with contextlib.suppress(OSError):
            send(conn, {"status": status})
    return status


def _reopen_stdio() -> None:
    """Python's standard streams over the client's descriptors, buffered as a new process
    would buffer them (line by line on a terminal)."""
    sys.stdin = open(0, encoding="utf-8", errors="surrogateescape", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", errors="surrogateescape", closefd=False,  # noqa: SIM115
                      buffering=1 if os.isatty(1) else -1)
    sys.stderr = io.TextIOWrapper(open(2, "wb", buffering=0, closefd=False),  # noqa: SIM115
                                  encoding="utf-8", errors="backslashreplace",
                                  line_buffering=True)


# -- pybuild daemon start | stop | status ---------------------------------------------


def _running(directory: Path) -> int | None:
    """The PID of the daemon serving ``directory``, if one does."""
    try:
        pid = int((directory / PID_NAME).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid if (directory / SOCKET_NAME).exists() else None


def start(directory: Path) -> int:
    """Start a daemon in the background (nothing to do when one runs); wait until it
    serves."""
    pid = _running(directory)
    if pid is not None:
        print(f"pybuild daemon: already running (pid {pid}, {directory / SOCKET_NAME})")
        return 0
    from builder.errors import BuildError

    try:
        _own_directory(directory)
    except BuildError as exc:
        print(f"pybuild daemon: did not start: {exc}", file=sys.stderr)
        return 1
    log = (directory / LOG_NAME).open("ab")
    with log:
        proc = subprocess.Popen([sys.executable, "-m", "builder.daemon", "serve",
                                 str(directory)], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while _running(directory) != proc.pid:
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            print(f"pybuild daemon: did not start{_last_line(directory / LOG_NAME)} (see "
                  f"{directory / LOG_NAME})", file=sys.stderr)
            return 1
        time.sleep(0.02)
    print(f"pybuild daemon: serving on {directory / SOCKET_NAME} (pid {proc.pid})")
    return 0


def _last_line(log: Path) -> str:
    """``: <the log's last line>`` (a refusal to start says why there), or nothing."""
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f": {lines[-1].removeprefix('pybuild daemon: ')}" if lines else ""


def stop_daemon(directory: Path) -> int:
    """Stop the daemon serving ``directory`` (builds in progress finish)."""
    pid = _running(directory)
    if pid is None:
        print("pybuild daemon: not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)
    else:
        print(f"pybuild daemon: pid {pid} did not stop", file=sys.stderr)
        return 1
    print(f"pybuild daemon: stopped (pid {pid})")
    return 0


def status(directory: Path) -> int:
    """Say whether a daemon serves ``directory``; exit status 0 when one does, 3 if not."""
    pid = _running(directory)
    if pid is None:
        print("pybuild daemon: not running")
        return 3
    print(f"pybuild daemon: running (pid {pid}, {directory / SOCKET_NAME})")
    return 0


def run_action(action: str, directory: Path | None) -> int:
    """Carry out one ``pybuild daemon`` action: ``start``, ``stop``, ``status`` or ``serve``
    (in the foreground, what ``start`` runs)."""
    directory = directory or daemon_dir()
    if action == "serve":
        return serve(directory)
    return {"start": start, "stop": stop_daemon, "status": status}[action](directory)


if __name__ == "__main__":  # python -m builder.daemon serve DIR (what start runs)
    if len(sys.argv) != 3 or sys.argv[1] != "serve":
        sys.exit("usage: python -m builder.daemon serve DIR")
    sys.exit(serve(Path(sys.argv[2])))
