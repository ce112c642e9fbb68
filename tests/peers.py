"""The real peers the tests run against: finding them, and starting dockerd when needed.

A missing peer is a test failure with a message saying which Debian package provides it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

DOCKER = "/usr/bin/docker"
PACKAGES = {
    "docker": "docker.io", "dockerd": "docker.io", "skopeo": "skopeo", "umoci": "umoci",
    "podman": "podman", "buildah": "buildah", "registry": "docker-registry",
    "busybox": "busybox-static", "debootstrap": "debootstrap", "zstd": "zstd",
    "newuidmap": "uidmap", "newgidmap": "uidmap", "setpriv": "util-linux",
    "useradd": "passwd", "usermod": "passwd", "userdel": "passwd",
    "radosgw": "radosgw", "ceph-mon": "ceph-mon", "ceph-mgr": "ceph-mgr",
    "ceph-osd": "ceph-osd", "/usr/lib/postgresql/15/bin/initdb": "postgresql-15",
    "/usr/bin/aws": "awscli", "gcc": "gcc libc6-dev", "slirp4netns": "slirp4netns",
    "ip": "iproute2", "qemu-aarch64-static": "qemu-user-static",
    "ssh-agent": "openssh-client", "ssh-add": "openssh-client",
    "ssh-keygen": "openssh-client",
}


def require(tool: str) -> str:
    """The path of a peer program; fail the test (never skip) when it is missing."""
    if tool == "docker":
        path: str | None = DOCKER if os.access(DOCKER, os.X_OK) else None
    else:
        path = shutil.which(tool) or next(
            (p for p in (f"/usr/sbin/{tool}", f"/usr/bin/{tool}") if os.access(p, os.X_OK)), None)
    if path is None:
        pytest.fail(f"peer {tool!r} is missing: apt-get install {PACKAGES.get(tool, tool)}")
    return path


def docker(*args: str, check: bool = True, input: bytes | None = None,
           timeout: float = 600) -> subprocess.CompletedProcess[bytes]:
    """Run Debian's docker client (the one with BuildKit support) and capture its output."""
    env = dict(os.environ, DOCKER_BUILDKIT="1")
    proc = subprocess.run([DOCKER, *args], capture_output=True, input=input, env=env,
                          timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} failed ({proc.returncode}):\n"
                    f"{proc.stderr.decode(errors='replace')}")
    return proc


class Dockerd:
    """A Docker engine: the one already running, or one this test session starts."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def _alive(self) -> bool:
        return subprocess.run([DOCKER, "info"], capture_output=True, timeout=60).returncode == 0

    def start(self) -> None:
        """Use a running engine or start ``dockerd`` and wait until it answers."""
        require("docker")
        if self._alive():
            return
        dockerd = require("dockerd")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([dockerd], stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"dockerd exited with {self.proc.returncode}; see {self.log}:\n"
                            + self.log.read_text(errors="replace")[-3000:])
            if self._alive():
                return
            time.sleep(0.5)
        pytest.fail(f"dockerd did not answer within 90 s; see {self.log}")

    def stop(self) -> None:
        """Stop the engine if this session started it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
