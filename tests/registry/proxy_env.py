"""What the pull-through cache tests share: an upstream (CNCF distribution) with busybox
in it, a counting reverse proxy in front of it that can also hold a transfer half-way, and
our registry started as a mirror of it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from layerstore.content.local import LocalStore
from registry.testing.processes import RegistryProcess, distribution, ours
from tests.peers import require
from tests.registry.images import busybox_image, layout_of
from tests.registry.server import REPO_ROOT

_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer",
                  "upgrade", "proxy-authorization", "proxy-authenticate", "host"})


@dataclass
class Gate:
    """Holds transfers of one path after ``after`` bytes until :meth:`open` is called."""

    path_end: str
    after: int
    reached: threading.Event
    release: threading.Event

    def open(self) -> None:
        """Let the held transfers finish."""
        self.release.set()


class CountingProxy:
    """A reverse proxy on loopback that forwards everything to ``target`` and records each
    request as ``(method, path)``."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.requests: list[tuple[str, str]] = []
        self.gates: list[Gate] = []
        self.stopped = False
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=120, follow_redirects=False)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                if proxy.stopped:
                    # a kept-alive connection outlives the listener: drop it unanswered
                    self.close_connection = True
                    return
                with proxy._lock:
                    proxy.requests.append((self.command, self.path.split("?")[0]))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                try:
                    request = proxy._client.build_request(self.command,
                                                          proxy.target + self.path,
                                                          headers=headers, content=body)
                    response = proxy._client.send(request, stream=True)
                except (httpx.HTTPError, RuntimeError):
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                gate = next((g for g in proxy.gates if self.path.endswith(g.path_end)), None)
                with contextlib.closing(response):
                    self.send_response(response.status_code)
                    for key, value in response.headers.multi_items():
                        if key.lower() not in _HOP:
                            self.send_header(key, value)
                    if "content-length" not in response.headers:
                        self.send_header("Content-Length", "0")
                    self.end_headers()
                    if self.command == "HEAD":
                        return
                    sent = 0
                    for chunk in response.iter_raw(256 * 1024):
                        if gate is not None and sent >= gate.after:
                            gate.reached.set()
                            gate.release.wait(120)
                            gate = None
                        self.wfile.write(chunk)
                        sent += len(chunk)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def count(self, method: str | None = None, contains: str = "") -> int:
        """How many requests (of ``method``, with ``contains`` in the path) came in."""
        with self._lock:
            return sum(1 for m, p in self.requests
                       if (method is None or m == method) and contains in p)

    def gate(self, path_end: str, after: int) -> Gate:
        """Hold the next transfers of paths ending in ``path_end`` after ``after`` bytes."""
        gate = Gate(path_end, after, threading.Event(), threading.Event())
        self.gates.append(gate)
        return gate

    def stop(self) -> None:
        """Stop serving (the upstream is then unreachable through it)."""
        self.stopped = True
        for gate in self.gates:
            gate.open()
        self._server.shutdown()
        self._server.server_close()
        self._client.close()


@dataclass
class Upstream:
    """A distribution upstream and the counting proxy in front of it."""

    registry: RegistryProcess
    proxy: CountingProxy
    busybox: str

    def stop(self) -> None:
        """Stop both."""
        self.proxy.stop()
        self.registry.stop()


def push_busybox(address: str, layout: Path, repository: str, tag: str) -> None:
    """Copy the layout's ``latest`` image into a registry with skopeo."""
    proc = subprocess.run([require("skopeo"), "copy", "--dest-tls-verify=false",
                           f"oci:{layout}:latest", f"docker://{address}/{repository}:{tag}"],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"skopeo copy into {address} failed:\n{proc.stderr}")


def busybox_layout(tmp: Path, rootfs: Path, extra: dict[str, bytes] | None = None
                   ) -> tuple[Path, str]:
    """An OCI layout with busybox as ``latest`` and the manifest's digest."""
    store = LocalStore(tmp / "store")
    image = busybox_image(store, rootfs, extra=extra, workdir=tmp / "work")
    return layout_of(tmp / "layout", store, {"latest": image.manifest}), str(
        image.manifest.digest)


def start_upstream(tmp: Path, rootfs: Path) -> Upstream:
    """distribution with ``library/busybox:latest``, behind a counting proxy."""
    require("docker-registry")
    registry = distribution(tmp / "upstream").start()
    layout, digest = busybox_layout(tmp / "images", rootfs)
    push_busybox(registry.address, layout, "library/busybox", "latest")
    return Upstream(registry, CountingProxy(registry.url), digest)


def push_blob(url: str, repository: str, data: bytes) -> str:
    """Push ``data`` as a blob (one monolithic upload); its digest."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=url, timeout=300) as client:
        started = client.post(f"/v2/{repository}/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = started.headers["location"]
        # the location's query (distribution's _state) has to be kept
        target = f"{location}{'&' if '?' in location else '?'}digest={digest}"
        done = client.put(target, content=data,
                          headers={"Content-Type": "application/octet-stream"})
        assert done.status_code == 201, done.text
    return digest


def mirror(root: Path, remote: str, *, ttl: int | None = None, workers: int = 2,
           env: dict[str, str] | None = None) -> RegistryProcess:
    """Our registry as a mirror of ``remote`` (not started)."""
    settings = {"REGISTRY_PROXY_REMOTE": remote, "PYTHONPATH": str(REPO_ROOT)}
    if ttl is not None:
        settings["REGISTRY_PROXY_TTL"] = str(ttl)
    return ours(root, workers=workers, env={**settings, **(env or {})})


class PrivateDockerd:
    """A Docker engine of a test's own (data root, exec root, socket and ``daemon.json``
    under ``directory``), so that its ``registry-mirrors`` can name our registry.

    Its containers use a bridge of its own, made here and removed by :meth:`stop`: with
    ``--bridge none`` dockerd deletes the host's ``docker0``, which the shared engine uses."""

    def __init__(self, directory: Path, daemon: dict[str, object]) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.config = directory / "daemon.json"
        self.config.write_text(json.dumps(daemon))
        self.socket = directory / "docker.sock"
        self.log = directory / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.bridge = f"pbmirror{os.getpid() % 10**7}"

    def _make_bridge(self) -> None:
        ip = require("ip")
        subprocess.run([ip, "link", "del", self.bridge], capture_output=True, timeout=30)
        net = 10 + os.getpid() % 200
        for argv in (["link", "add", self.bridge, "type", "bridge"],
                     ["addr", "add", f"10.213.{net}.1/24", "dev", self.bridge],
                     ["link", "set", self.bridge, "up"]):
            subprocess.run([ip, *argv], check=True, capture_output=True, timeout=30)

    def start(self, timeout: float = 90) -> PrivateDockerd:
        """Start ``dockerd`` and wait until it answers."""
        d = self.directory
        self._make_bridge()
        argv = [require("dockerd"), "--data-root", str(d / "data"), "--exec-root",
                str(d / "exec"), "--pidfile", str(d / "docker.pid"), "--host",
                f"unix://{self.socket}", "--config-file", str(self.config), "--bridge",
                self.bridge, "--iptables=false", "--ip-masq=false"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"dockerd exited with {self.proc.returncode}:\n"
                            + self.log.read_text(errors="replace")[-3000:])
            if self.docker("info", check=False).returncode == 0:
                return self
            time.sleep(0.5)
        self.stop()
        pytest.fail(f"dockerd did not answer within {timeout} s; see {self.log}")

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the docker client against this engine."""
        proc = subprocess.run([require("docker"), "--host", f"unix://{self.socket}", *args],
                              capture_output=True, text=True, timeout=300)
        if check and proc.returncode != 0:
            pytest.fail(f"docker {' '.join(args)} failed ({proc.returncode}):\n"
                        f"{proc.stdout}\n{proc.stderr}")
        return proc

    def stop(self) -> None:
        """Stop the engine (SIGTERM, then SIGKILL) and remove its bridge."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run([require("ip"), "link", "del", self.bridge], capture_output=True,
                       timeout=30)
