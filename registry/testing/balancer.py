"""HAProxy (Debian's ``haproxy``) as a load balancer in front of registry replicas, for tests
and benchmarks.

:func:`start` writes a configuration under a directory, runs ``haproxy`` in the foreground on
a free loopback port and waits until it answers; :meth:`Balancer.stop` stops it by its PID.
The balancer is what a scaled-out deployment puts in front of stateless replicas:

- HTTP mode, ``balance roundrobin`` with no stickiness of any kind: no cookie, no stick
  table, and ``option http-server-close`` so that no kept-alive server connection pulls a
  client's next request to the server of its last one. Every request is balanced on its own,
  so an upload's PATCHes and its closing PUT land on different replicas.
- Health checks of every replica (``GET /v2/``, 200 or 401 is alive) twice a second; a
  replica failing two in a row is taken out, one success brings it back.
- A request whose connection to a replica is refused is retried on another one
  (``retries`` + ``option redispatch``); nothing else is replayed: a request whose replica died
  after taking it fails, and the client retries, as against any registry.
- When no replica is up the balancer answers 502/503/504 itself with the distribution spec's
  JSON error body (``UNAVAILABLE``) and ``Retry-After: 1``.
- One access-log line per request, ``<server> <status> <method> <uri>``, in
  ``haproxy.log``; :meth:`Balancer.requests` parses them (which replica served what).
- An admin socket: :meth:`Balancer.set_state` puts a replica in ``maint``/``drain``/``ready``.

``python -m registry.testing.balancer --dir DIR HOST:PORT...`` runs one in the foreground
until interrupted, printing its URL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, Unpack

from registry.testing.processes import free_port

CONFIG_FILE = "haproxy.cfg"
LOG_FILE = "haproxy.log"
ADMIN_SOCKET = "admin.sock"
BACKEND = "replicas"
STATES = ("ready", "drain", "maint")


class BalancerError(RuntimeError):
    """HAProxy could not be started or driven; the message names the cause and its log."""


@dataclass(frozen=True)
class Served:
    """One request as the balancer logged it."""

    server: str
    status: int
    method: str
    uri: str


@dataclass(frozen=True)
class Balancer:
    """A running HAProxy in front of ``backends`` (``host:port`` each, named ``r0``, ``r1``…
    in that order)."""

    directory: Path
    host: str
    port: int
    backends: tuple[str, ...]
    pid: int
    scheme: str = "http"

    @property
    def address(self) -> str:
        """``host:port`` as image references spell it."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The base URL clients use."""
        return f"{self.scheme}://{self.address}"

    @property
    def log_path(self) -> Path:
        """HAProxy's output: the access log and its own messages."""
        return self.directory / LOG_FILE

    @staticmethod
    def server_name(index: int) -> str:
        """The name of the ``index``-th backend in logs and admin commands."""
        return f"r{index}"

    def requests(self) -> list[Served]:
        """Every request logged so far, oldest first."""
        out: list[Served] = []
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return out
        for line in text.splitlines():
            parts = line.split(" ")
            if len(parts) == 5 and parts[0] == "req" and parts[2].lstrip("-").isdigit():
                out.append(Served(parts[1].split("/", 1)[-1], int(parts[2]), parts[3],
                                  parts[4]))
        return out

    def command(self, line: str) -> str:
        """Send one command to HAProxy's admin socket; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(self.directory / ADMIN_SOCKET))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def set_state(self, index: int, state: str) -> None:
        """Put backend ``index`` in ``ready``, ``drain`` (no new requests) or ``maint``."""
        if state not in STATES:
            raise BalancerError(f"state must be one of {', '.join(STATES)}, not {state!r}")
        answer = self.command(f"set server {BACKEND}/{self.server_name(index)} state {state}")
        if answer.strip():
            raise BalancerError(f"haproxy refused state {state} for backend {index}: "
                                f"{answer.strip()}")

    def up_servers(self) -> list[str]:
        """The backends HAProxy currently considers up (health checks and admin state)."""
        answer = self.command("show stat -1 4 -1 json")
        try:
            rows = json.loads(answer)
        except json.JSONDecodeError as exc:
            raise BalancerError(f"haproxy's stats are not JSON: {answer[:200]}") from exc
        up: list[str] = []
        for row in rows:
            fields = {f["field"]["name"]: f["value"]["value"] for f in row}
            if fields.get("svname", "").startswith("r") and fields.get("status") == "UP":
                up.append(fields["svname"])
        return sorted(up)

    def wait_servers(self, count: int, timeout: float = 30) -> None:
        """Wait until exactly ``count`` backends are up."""
        deadline = time.monotonic() + timeout
        while True:
            up = self.up_servers()
            if len(up) == count:
                return
            if time.monotonic() > deadline:
                raise BalancerError(f"{len(up)} backends up ({', '.join(up) or 'none'}), "
                                    f"not {count}, after {timeout} s; see {self.log_path}")
            time.sleep(0.1)

    def stop(self, timeout: float = 10) -> None:
        """Stop HAProxy (SIGUSR1: finish what is in flight; SIGKILL after ``timeout``)."""
        _stop(self.pid, timeout)


def _stop(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _error_page(status: int, reason: str, message: str) -> str:
    body = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": message,
                                   "detail": None}]})
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nCache-Control: no-cache\r\n"
            f"Connection: close\r\n\r\n{body}")


def config(backends: Sequence[str], directory: Path, *, host: str, port: int,
           check_path: str = "/v2/", backend_tls: bool = False,
           frontend_pem: Path | None = None, timeout_server: int = 300) -> str:
    """The HAProxy configuration :func:`start` runs (error pages written to ``directory``)."""
    pages = {502: ("Bad Gateway", "the registry replica failed to answer"),
             503: ("Service Unavailable", "no registry replica is available"),
             504: ("Gateway Timeout", "the registry replica did not answer in time")}
    errorfiles = []
    for status, (reason, message) in pages.items():
        page = directory / f"{status}.http"
        page.write_text(_error_page(status, reason, message))
        errorfiles.append(f"    errorfile {status} {page}")
    bind = f"    bind {host}:{port}"
    if frontend_pem is not None:
        bind += f" ssl crt {frontend_pem}"
    ssl = " ssl verify none" if backend_tls else ""
    check = f"check inter 500ms fastinter 200ms downinter 500ms fall 2 rise 1{ssl}"
    servers = [f"    server r{i} {b} {check}" for i, b in enumerate(backends)]
    return "\n".join([
        "global",
        "    nbthread 1",
        "    maxconn 2000",
        f"    stats socket {directory / ADMIN_SOCKET} mode 600 level admin",
        "    log stdout format raw daemon",
        "",
        "defaults",
        "    mode http",
        "    log global",
        '    log-format "req %b/%s %ST %HM %HU"',
        "    option http-server-close",
        "    option dontlognull",
        "    option redispatch 1",
        "    retries 3",
        "    retry-on conn-failure",
        "    timeout connect 2s",
        "    timeout client 300s",
        f"    timeout server {timeout_server}s",
        "    timeout http-request 60s",
        "    timeout queue 30s",
        *errorfiles,
        "",
        "frontend registry",
        bind,
        f"    default_backend {BACKEND}",
        "",
        f"backend {BACKEND}",
        "    balance roundrobin",
        f"    option httpchk GET {check_path}",
        "    http-check expect rstatus ^(200|401)$",
        *servers,
        "",
    ])


def start(backends: Sequence[str], directory: Path, *, host: str = "127.0.0.1",
          port: int | None = None, check_path: str = "/v2/", backend_tls: bool = False,
          frontend_pem: Path | None = None, timeout: float = 30) -> Balancer:
    """Start HAProxy round-robin over ``backends`` (``host:port`` each) and return once it
    accepts connections. ``backend_tls`` speaks HTTPS to the replicas (not verifying them);
    ``frontend_pem`` (certificate chain and key in one PEM file) serves HTTPS to clients."""
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        raise BalancerError("haproxy is missing: install Debian's haproxy (scripts/install.sh)")
    if not backends:
        raise BalancerError("a balancer needs at least one backend")
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    cfg = directory / CONFIG_FILE
    cfg.write_text(config(backends, directory, host=host, port=port, check_path=check_path,
                          backend_tls=backend_tls, frontend_pem=frontend_pem))
    check = subprocess.run([haproxy, "-c", "-q", "-f", str(cfg)], capture_output=True,
                           text=True)
    if check.returncode != 0:
        raise BalancerError(f"haproxy rejected {cfg}: {(check.stderr or check.stdout).strip()}")
    log = directory / LOG_FILE
    with log.open("ab") as out:
        proc = subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    balancer = Balancer(directory, host, port, tuple(backends), proc.pid,
                        "https" if frontend_pem is not None else "http")
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise BalancerError(f"haproxy exited with {proc.returncode}: "
                                f"{log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection((host, port), timeout=1):
                pass
            if (directory / ADMIN_SOCKET).exists():
                return balancer
        except OSError:
            pass
        if time.monotonic() > deadline:
            balancer.stop()
            raise BalancerError(f"haproxy did not listen on {host}:{port} within {timeout} s; "
                                f"see {log}")
        time.sleep(0.05)


class _StartOptions(TypedDict, total=False):
    """The keyword options of :func:`start`."""

    host: str
    port: int | None
    check_path: str
    backend_tls: bool
    frontend_pem: Path | None
    timeout: float


@contextlib.contextmanager
def running(backends: Sequence[str], directory: Path,
            **kwargs: Unpack[_StartOptions]) -> Iterator[Balancer]:
    """A balancer for the ``with`` block (see :func:`start`), stopped after it."""
    balancer = start(backends, directory, **kwargs)
    try:
        yield balancer
    finally:
        balancer.stop()


def main(argv: list[str] | None = None) -> int:
    """``--dir DIR [--port N] [--backend-tls] HOST:PORT...``: run until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m registry.testing.balancer",
                                     description="HAProxy round-robin over registry replicas")
    parser.add_argument("backends", nargs="+", metavar="HOST:PORT")
    parser.add_argument("--dir", type=Path, required=True, help="config, socket and log")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--backend-tls", action="store_true", help="HTTPS to the replicas")
    args = parser.parse_args(argv)
    try:
        balancer = start(args.backends, args.dir, host=args.host, port=args.port,
                         backend_tls=args.backend_tls)
    except BalancerError as exc:
        print(f"balancer: {exc}", file=sys.stderr)
        return 1
    print(balancer.url, flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        balancer.stop()
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
