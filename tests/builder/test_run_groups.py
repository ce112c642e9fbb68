"""Supplementary groups of RUN steps and ``pybuild run``: the primary gid is in the list, as
BuildKit (v0.12 and later) and ``docker run`` set it up (checked by hand against BuildKit
v0.32, which writes exactly :data:`EXPECTED`). The Debian engine's bundled BuildKit 0.8
predates that and leaves the list empty, so ``docker run`` is the peer here."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.builder.test_build import build
from tests.builder.test_commands import pybuild
from tests.peers import Dockerd, docker

DOCKERFILE = (
    "FROM busybox\n"
    "RUN echo extra:x:3000:nobody >> /etc/group && grep ^Groups: /proc/self/status > /g-root\n"
    "USER 1000:1000\n"
    "RUN grep ^Groups: /proc/self/status > /tmp/g-1000\n"
    "USER nobody\n"
    "RUN grep ^Groups: /proc/self/status > /tmp/g-nobody\n"
    "USER nobody:nogroup\n"
    "RUN grep ^Groups: /proc/self/status > /tmp/g-nobody-nogroup\n"
    "USER root\n"
)
#: ``USER`` → the kernel's (sorted) supplementary group list of a process running as it.
EXPECTED = {"root": "0", "1000:1000": "1000", "nobody": "3000 65534", "nobody:nogroup": "65534"}
FILES = {"root": "/g-root", "1000:1000": "/tmp/g-1000", "nobody": "/tmp/g-nobody",
         "nobody:nogroup": "/tmp/g-nobody-nogroup"}


def groups_line(text: str) -> str:
    """The group list of a ``Groups:`` line of ``/proc/PID/status``."""
    assert text.startswith("Groups:"), text
    return text.removeprefix("Groups:").strip()


def test_primary_gid_is_a_supplementary_group_like_docker(
        store_root: Path, tmp_path: Path, dockerd: Dockerd,
        capfd: pytest.CaptureFixture[str]) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    name = f"pybuild-test/groups-{uuid.uuid4().hex[:12]}:1"
    assert build(store_root, ctx, DOCKERFILE, "-t", name) == 0
    capfd.readouterr()
    for user, path in FILES.items():
        assert pybuild(store_root, "run", "--rm", name, "cat", path) == 0
        assert groups_line(capfd.readouterr().out) == EXPECTED[user], f"RUN as {user}"
    for user in EXPECTED:
        assert pybuild(store_root, "run", "--rm", "--user", user, name,
                       "grep", "^Groups:", "/proc/self/status") == 0
        assert groups_line(capfd.readouterr().out) == EXPECTED[user], f"pybuild run -u {user}"
    archive = tmp_path / "image.tar"
    assert pybuild(store_root, "save", "-o", str(archive), name) == 0
    docker("load", "-i", str(archive))
    try:
        for user in EXPECTED:
            out = docker("run", "--rm", "--user", user, name, "grep", "^Groups:",
                         "/proc/self/status").stdout.decode()
            assert groups_line(out) == EXPECTED[user], f"docker run -u {user}"
    finally:
        docker("rmi", "-f", name, check=False)
