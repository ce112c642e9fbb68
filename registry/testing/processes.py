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
        ``REGISTRY_*`` variables are dropped, so only ``env`` configures the server."""
        inherited = {k: v for k, v in os.environ.items()
                     if not (self.clean_env and k.startswith("REGISTRY_"))}
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         env={**inherited, **self.env}, cwd=self.cwd,
                                         start_new_session=True)
        try:
            wait_until_up(self.proc, self.url, self.log_path, timeout)
        except RuntimeError:
            self.stop()
            raise
        return self

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


def wait_until_up(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    """Wait until ``url/v2/`` answers (any status below 500); raise RuntimeError with the
    log's tail if the process exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n"
                               + log.read_text(errors="replace")[-3000:])
        try:
            if httpx.get(f"{url}/v2/", timeout=1, verify=False).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{proc.args!r} did not answer on {url} within {timeout} s:\n"
                       + log.read_text(errors="replace")[-3000:])


def ours(root: Path, *, host: str = "127.0.0.1", port: int | None = None, workers: int = 2,
         extra: list[str] | None = None, env: dict[str, str] | None = None,
         tls: bool = False) -> RegistryProcess:
    """``registry serve`` on loopback with data in ``root`` (not started); ``tls`` adds
    ``--tls`` (the private CA ends up in ``root/tls/ca.crt``) and speaks HTTPS to it."""
    port = port or free_port(host)
    root.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "registry.cli", "serve", "--addr", f"{host}:{port}",
            "--root", str(root), "--workers", str(workers), *(["--tls"] if tls else []),
            *(extra or [])]
    return RegistryProcess(argv, host, port, root.parent / f"{root.name}.log",
                           scheme="https" if tls else "http", env=env or {})


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
