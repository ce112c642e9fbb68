"""SSH agents given to a build (``--ssh``) and the sockets RUN steps reach them through.

``--ssh default`` forwards the agent at ``$SSH_AUTH_SOCK``; ``--ssh ID=SOCKET`` another
agent; ``--ssh ID=KEY[,KEY...]`` starts a private ``ssh-agent`` holding those keys for the
build. A ``RUN --mount=type=ssh`` gets a socket of its own, with the mount's owner and mode,
that relays each connection to the agent: the agent's socket itself is never mounted, and
keys never enter the build's filesystem, layers or cache.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError

__all__ = ["SocketRelay", "SshAgents", "SshSource", "parse_ssh_flag", "parse_ssh_flags"]

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class SshSource:
    """One ``--ssh``: its ``id`` and either an agent ``socket`` or private ``keys``."""

    id: str
    socket: Path | None = None
    keys: tuple[Path, ...] = ()


def parse_ssh_flag(text: str, environ: os._Environ[str] | dict[str, str] | None = None
                   ) -> SshSource:
    """One ``--ssh default|ID[=SOCKET|KEY[,KEY...]]``; :class:`BuildError` naming the flag
    when the agent or a key is missing."""
    env = os.environ if environ is None else environ
    ident, eq, value = text.partition("=")
    ident = ident.strip()
    where = f"--ssh {text!r}"
    if not ident:
        raise BuildError(f"{where}: expected default or ID[=SOCKET|KEY[,KEY...]]")
    if not eq:
        agent = env.get("SSH_AUTH_SOCK")
        if not agent:
            raise BuildError(f"{where}: SSH_AUTH_SOCK is not set; start an ssh-agent or give "
                             f"{ident}=SOCKET|KEY")
        value = agent
    paths = [Path(p).expanduser() for p in value.split(",") if p]
    if not paths:
        raise BuildError(f"{where}: no socket or key given")
    for path in paths:
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise BuildError(f"{where}: {path}: {exc.strerror}") from None
        if stat.S_ISSOCK(mode):
            if len(paths) > 1:
                raise BuildError(f"{where}: an agent socket cannot be listed with other paths")
            return SshSource(ident, socket=path.resolve())
        if not stat.S_ISREG(mode):
            raise BuildError(f"{where}: {path} is neither an agent socket nor a key file")
    return SshSource(ident, keys=tuple(p.resolve() for p in paths))


def parse_ssh_flags(texts: Iterable[str]) -> dict[str, SshSource]:
    """Every ``--ssh`` flag, by id (a later one with the same id wins, as in buildx)."""
    return {source.id: source for source in (parse_ssh_flag(t) for t in texts)}


class SocketRelay:
    """A Unix socket at ``path`` (``mode``, ``uid``:``gid``) whose connections are relayed
    to the socket at ``upstream``, until :meth:`close`."""

    def __init__(self, upstream: Path, path: Path, *, mode: int = 0o600, uid: int = 0,
                 gid: int = 0) -> None:
        self.upstream = upstream
        self.path = path
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        os.chown(path, uid, gid)
        os.chmod(path, mode)
        self._listener.listen(16)
        self._closed = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="ssh-relay", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                agent.connect(str(self.upstream))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, agent))
            for a, b in ((client, agent), (agent, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(_CHUNK):
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Stop accepting and drop every relayed connection."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.close()
            self._open.clear()
        self._thread.join(5)


class SshAgents:
    """The agents of one build, by id: forwarded sockets as they are, key files loaded into
    a private ``ssh-agent`` started on first use and stopped by :meth:`close`."""

    def __init__(self, sources: dict[str, SshSource]) -> None:
        self.sources = sources
        self._sockets: dict[str, Path] = {}
        self._agents: list[subprocess.Popen[bytes]] = []
        self._dirs: list[str] = []
        self._lock = threading.Lock()
        self._relays = 0
        self._relay_dir: str | None = None

    def socket(self, ident: str) -> Path | None:
        """The agent socket of ``ident``; None when the build was not given it."""
        source = self.sources.get(ident)
        if source is None:
            return None
        if source.socket is not None:
            return source.socket
        with self._lock:
            if ident not in self._sockets:
                self._sockets[ident] = self._start(source)
            return self._sockets[ident]

    def _start(self, source: SshSource) -> Path:
        agent_bin, add_bin = shutil.which("ssh-agent"), shutil.which("ssh-add")
        if agent_bin is None or add_bin is None:
            raise BuildError(f"--ssh {source.id}: key files need ssh-agent and ssh-add "
                             "(Debian package openssh-client)")
        home = tempfile.mkdtemp(prefix="pybuild-ssh-")
        self._dirs.append(home)
        path = Path(home) / "agent.sock"
        agent = subprocess.Popen([agent_bin, "-D", "-a", str(path)],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        self._agents.append(agent)
        for _ in range(500):
            if path.exists() or agent.poll() is not None:
                break
            threading.Event().wait(0.01)
        if not path.exists():
            raise BuildError(f"--ssh {source.id}: ssh-agent did not start")
        env = {**os.environ, "SSH_AUTH_SOCK": str(path), "SSH_ASKPASS_REQUIRE": "never"}
        for key in source.keys:
            done = subprocess.run([add_bin, "-q", str(key)], env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=30)
            if done.returncode != 0:
                reason = (done.stderr.strip().splitlines() or ["ssh-add failed"])[-1]
                raise BuildError(f"--ssh {source.id}: cannot load key {key}: {reason}")
        return path

    def close(self) -> None:
        """Stop the agents this build started and remove their sockets."""
        for agent in self._agents:
            agent.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                agent.wait(5)
            if agent.poll() is None:
                agent.kill()
                agent.wait()
        for home in self._dirs:
            shutil.rmtree(home, ignore_errors=True)
        self._agents.clear()
        self._dirs.clear()
        self._relay_dir = None

    @contextlib.contextmanager
    def relay(self, ident: str, *, mode: int, uid: int, gid: int
              ) -> Iterator[SocketRelay | None]:
        """A new :class:`SocketRelay` to agent ``ident`` while the block runs (in a short
        private directory: socket paths are limited to 108 bytes); None when the build was
        not given that agent."""
        upstream = self.socket(ident)
        if upstream is None:
            yield None
            return
        with self._lock:
            if not self._dirs or self._relay_dir is None:
                self._relay_dir = tempfile.mkdtemp(prefix="pybuild-ssh-")
                self._dirs.append(self._relay_dir)
            self._relays += 1
            path = Path(self._relay_dir) / f"relay-{self._relays}.sock"
        relay = SocketRelay(upstream, path, mode=mode, uid=uid, gid=gid)
        try:
            yield relay
        finally:
            relay.close()
            with contextlib.suppress(OSError):
                path.unlink()
