"""A network world of a test's own, for the RUN network tests.

:class:`World` is a named network namespace (``ip netns add``) holding ``lo``, a veth pair
with :data:`ADDRESS` on one end, and servers made in it: a TCP greeter on :data:`ADDRESS`
(the non-loopback service a RUN on the default network must reach), one on ``127.0.0.1``
(the world's loopback, which it must not reach) and a DNS server on :data:`ADDRESS` that
answers :data:`NAME`. Programs started with :meth:`World.argv` run inside the world with a
``/etc/resolv.conf`` naming that DNS server, so pybuild's executor sees the world as the
host. Nothing of the machine's own network is touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import struct
import subprocess
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from layerstore.syscalls import libc

CLONE_NEWNET = 0x40000000
ADDRESS = "198.18.0.1"
PEER = "198.18.0.2"
NAME = "served.pybuild.test"
GREETING = b"hello from the world\n"
LOOPBACK_GREETING = b"hello from the world's loopback\n"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _in_netns(path: str, make: Callable[[], socket.socket]) -> socket.socket:
    """A socket made by ``make`` in the network namespace at ``path`` (a socket keeps the
    namespace it was created in; this thread returns to its own afterwards)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns into the test world failed")
        try:
            return make()
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back failed")
    finally:
        os.close(own)
        os.close(target)


def _listener(host: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, 0))
    s.listen(16)
    return s


def _greet(server: socket.socket, greeting: bytes, seen: list[str]) -> None:
    """Answer every connection with ``greeting`` (an HTTP response when the peer speaks
    HTTP) until the socket is closed."""
    while True:
        try:
            conn, peer = server.accept()
        except OSError:
            return
        with conn:
            seen.append(peer[0])
            conn.settimeout(2)
            try:
                first = conn.recv(4096)
            except OSError:
                first = b""
            if first.startswith(b"GET "):
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(greeting), greeting))
            else:
                conn.sendall(greeting)


def _dns_answer(query: bytes) -> bytes | None:
    """The answer to a DNS query: an A record of :data:`ADDRESS` for :data:`NAME`, NXDOMAIN
    for any other name, nothing for what does not parse."""
    if len(query) < 12:
        return None
    ident, _flags, qdcount = struct.unpack("!HHH", query[:6])
    if qdcount != 1:
        return None
    labels, i = [], 12
    while i < len(query) and query[i]:
        labels.append(query[i + 1:i + 1 + query[i]].decode(errors="replace"))
        i += 1 + query[i]
    end = i + 5
    if end > len(query):
        return None
    qtype = struct.unpack("!H", query[i + 1:i + 3])[0]
    question = query[12:end]
    name = ".".join(labels).lower()
    if name != NAME:
        return struct.pack("!HHHHHH", ident, 0x8183, 1, 0, 0, 0) + question
    if qtype != 1:
        return struct.pack("!HHHHHH", ident, 0x8180, 1, 0, 0, 0) + question
    record = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(ADDRESS)
    return struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0) + question + record


def _serve_dns(server: socket.socket, seen: list[str]) -> None:
    while True:
        try:
            query, peer = server.recvfrom(512)
        except OSError:
            return
        if peer is None:  # shut down
            return
        seen.append(peer[0])
        answer = _dns_answer(query)
        if answer is not None:
            server.sendto(answer, peer)


class World:
    """The namespace, its servers and the resolv.conf that names its DNS server."""

    def __init__(self, scratch: Path) -> None:
        self.name = f"pybuild-test-{uuid.uuid4().hex[:8]}"
        self.path = f"/run/netns/{self.name}"
        self.sockets: list[socket.socket] = []
        self.seen: list[str] = []
        self.dns_queries: list[str] = []
        _ip("netns", "add", self.name)
        try:
            self._configure()
            self._start()
        except BaseException:
            self.close()
            raise
        self.resolv_conf = scratch / "world-resolv.conf"
        self.resolv_conf.write_text(f"nameserver {ADDRESS}\noptions timeout:2 attempts:2\n")

    def _configure(self) -> None:
        veth = f"pbw{uuid.uuid4().hex[:8]}"
        _ip("-n", self.name, "link", "set", "lo", "up")
        _ip("-n", self.name, "link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
        _ip("-n", self.name, "addr", "add", f"{ADDRESS}/24", "dev", veth)
        _ip("-n", self.name, "addr", "add", f"{PEER}/24", "dev", f"{veth}p")
        _ip("-n", self.name, "link", "set", veth, "up")
        _ip("-n", self.name, "link", "set", f"{veth}p", "up")

    def _start(self) -> None:
        outside = _in_netns(self.path, lambda: _listener(ADDRESS))
        inside = _in_netns(self.path, lambda: _listener("127.0.0.1"))
        dns = _in_netns(self.path, lambda: _udp(ADDRESS, 53))
        self.sockets += [outside, inside, dns]
        self.port = outside.getsockname()[1]
        self.loopback_port = inside.getsockname()[1]
        for target, args in ((_greet, (outside, GREETING, self.seen)),
                             (_greet, (inside, LOOPBACK_GREETING, self.seen)),
                             (_serve_dns, (dns, self.dns_queries))):
            threading.Thread(target=target, args=args, daemon=True).start()

    def argv(self, *command: str) -> list[str]:
        """``command`` run inside the world, with its resolv.conf over /etc/resolv.conf."""
        script = 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"'
        return ["ip", "netns", "exec", self.name, "unshare", "--mount", "--propagation",
                "private", "sh", "-c", script, "sh", str(self.resolv_conf), *command]

    def close(self) -> None:
        """Stop the servers and delete the namespace."""
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, timeout=30)


def _udp(host: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, port))
    return s
