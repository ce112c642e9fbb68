"""Registries run as real processes on loopback, for tests and benchmarks: ours
(``registry serve``) and CNCF distribution (Debian's ``docker-registry``) as the reference."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import httpx

#: How much of a server's log an error shows (characters, from the end).
LOG_TAIL = 3000
_LISTEN = "0A"  # the TCP state of a listening socket in /proc/net/tcp
#: How many ports a server whose port was taken tries in all (``port_free``).
PORT_ATTEMPTS = 3


class PortTaken(RuntimeError):
    """Another process bound the server's port before the server could."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class RegistryProcess:
    """A registry server process; ``start`` waits until ``/v2/`` answers."""

    argv: list[str]
    host: str
    port: int
    log_path: Path
    scheme: str = "http"
    env: dict[str, str] = field(default_factory=dict)
    clean_env: bool = False
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    port_free: bool = False

    @property
    def address(self) -> str:
        """``host:port`` as image references spell it."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The base URL."""
        return f"{self.scheme}://{self.address}"

    def start(self, timeout: float = 30) -> Self:
        """Start the process and wait for it to answer. With ``clean_env`` the inherited
        ``REGISTRY_*`` variables are dropped, so only ``env`` configures the server.

        A port found by :func:`free_port` is free only for a moment: when another process
        binds it first, the server cannot, and what answers there is not this server. With
        ``port_free`` (the port was picked so, and ``argv`` names it as ``host:port``) the
        server is started again on another free port; otherwise that fails at once."""
        for attempt in range(PORT_ATTEMPTS):
            try:
                self._start_once(timeout)
                return self
            except PortTaken:
                if not self.port_free or attempt == PORT_ATTEMPTS - 1:
                    raise
                self._move_to(free_port(self.host))
        return self

    def _start_once(self, timeout: float) -> None:
        inherited = {k: v for k, v in os.environ.items()
                     if not (self.clean_env and k.startswith("REGISTRY_"))}
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         env={**inherited, **self.env}, cwd=self.cwd,
                                         start_new_session=True)
        try:
            wait_until_up(self.proc, self.url, self.log_path, timeout)
            if not listens(self.proc.pid, self.port):
                raise PortTaken(
                    f"{self.url} answered, but not from {self.argv[0]} (pid {self.proc.pid}): "
                    f"another process took port {self.port} first; "
                    f"{self.state()}:\n{self.log_tail()}")
        except RuntimeError as exc:
            self.stop()
            if isinstance(exc, PortTaken):
                raise
            with self.log_path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace").lower()
            if "address already in use" in text:
                raise PortTaken(str(exc)) from None
            raise

    def _move_to(self, port: int) -> None:
        old, new = f"{self.host}:{self.port}", f"{self.host}:{port}"
        self.argv = [new if arg == old else arg for arg in self.argv]
        self.port = port

    def stop(self) -> None:
        """Stop the process group gracefully (SIGTERM, then SIGKILL)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """``kill -9`` the whole process group, as a crash would."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def log(self) -> str:
        """Everything the process wrote to stdout and stderr."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, size: int = LOG_TAIL) -> str:
        """The last ``size`` characters of :meth:`log`."""
        return self.log()[-size:]

    def state(self) -> str:
        """Whether the process still runs (and listens on its port) or how it ended, in
        words: ``pid 123 runs and listens on 127.0.0.1:5000``."""
        if self.proc is None:
            return "never started"
        code = self.proc.poll()
        if code is not None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
            return f"pid {self.proc.pid} {how}"
        listening = "listens" if listens(self.proc.pid, self.port) else "does NOT listen"
        return f"pid {self.proc.pid} runs and {listening} on {self.address}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pids(self) -> list[int]:
        """The process and its children (uvicorn workers)."""
        if self.proc is None:
            return []
        out = subprocess.run(["pgrep", "-g", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on TCP ``port`` (as the host's
    ``/proc/net/tcp`` and ``tcp6`` list them), so that what answers there is that
    process and not another one that bound the port first."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN \
                    and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return False
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for name in names:
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}") in inodes:
                return True
        except OSError:
            continue
    return False


def wait_until_up(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    """Wait until ``url/v2/`` answers (any status below 500); raise RuntimeError with the
    log's tail if the process exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n"
                               + log.read_text(errors="replace")[-LOG_TAIL:])
        try:
            if httpx.get(f"{url}/v2/", timeout=1, verify=False).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{proc.args!r} did not answer on {url} within {timeout} s:\n"
                       + log.read_text(errors="replace")[-LOG_TAIL:])


def ours(root: Path, *, host: str = "127.0.0.1", port: int | None = None, workers: int = 2,
         extra: list[str] | None = None, env: dict[str, str] | None = None,
         tls: bool = False) -> RegistryProcess:
    """``registry serve`` on loopback with data in ``root`` (not started); ``tls`` adds
    ``--tls`` (the private CA ends up in ``root/tls/ca.crt``) and speaks HTTPS to it."""
    chosen = not port
    port = port or free_port(host)
    root.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "registry.cli", "serve", "--addr", f"{host}:{port}",
            "--root", str(root), "--workers", str(workers), *(["--tls"] if tls else []),
            *(extra or [])]
    return RegistryProcess(argv, host, port, root.parent / f"{root.name}.log",
                           scheme="https" if tls else "http", env=env or {}, port_free=chosen)


def distribution(root: Path, *, host: str = "127.0.0.1", port: int | None = None,
                 htpasswd: Path | None = None, tls: tuple[Path, Path] | None = None
                 ) -> RegistryProcess:
    """CNCF distribution (Debian ``docker-registry``) on loopback, storing in ``root``."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    port = port or free_port(host)
    root.mkdir(parents=True, exist_ok=True)
    lines = [
        "version: 0.1",
        "log:", "  level: error", "  accesslog:", "    disabled: true",
        "storage:", "  filesystem:", f"    rootdirectory: {root / 'data'}",
        "  delete:", "    enabled: true",
        "  cache:", "    blobdescriptor: inmemory",
        "http:", f"  addr: {host}:{port}",
    ]
    if tls:
        lines += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
    if htpasswd:
        lines += ["auth:", "  htpasswd:", "    realm: basic-realm", f"    path: {htpasswd}"]
    config = root / "config.yml"
    config.write_text("\n".join(lines) + "\n")
    return RegistryProcess([binary, "serve", str(config)], host, port,
                           root.parent / f"{root.name}.log", scheme="https" if tls else "http")
