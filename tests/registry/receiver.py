"""A webhook receiver on loopback for the tests: an HTTP server in a thread that keeps
every POST it gets and answers each path with the status codes it is told, in order (200
once they run out)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One POST: its path, headers (lower-case names) and body."""

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def doc(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    def signed_with(self, secret: str) -> bool:
        """Whether ``X-Pybuild-Signature`` is ``sha256=`` and the HMAC-SHA256 of the body."""
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.headers.get("x-pybuild-signature", ""))


class Receiver:
    """The server (start with :meth:`start`, stop with :meth:`stop`)."""

    def __init__(self, codes: dict[str, list[int]] | None = None) -> None:
        self.codes = {k: list(v) for k, v in (codes or {}).items()}
        self.received: list[Received] = []
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.received.append(Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    queue = receiver.codes.get(self.path) or []
                    code = queue.pop(0) if queue else 200
                    receiver._lock.notify_all()
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Receiver:
        """Serve in a thread."""
        self._thread.start()
        return self

    def url(self, path: str) -> str:
        """The URL of ``path`` on this receiver."""
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[Received]:
        """What ``path`` received so far."""
        with self._lock:
            return [r for r in self.received if r.path == path]

    def wait(self, path: str, count: int, timeout: float = 60) -> list[Received]:
        """Wait until ``path`` received ``count`` POSTs; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [r for r in self.received if r.path == path]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                assert left > 0, f"{path} received {len(found)} of {count} deliveries"
                self._lock.wait(left)

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
