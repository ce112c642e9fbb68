"""Shared fixtures: root check, the Docker engine, locally made base root filesystems."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerstore.testing.rootfs import make_busybox_rootfs
from tests.peers import Dockerd, require


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() != 0:
        raise pytest.UsageError("the test suite needs root (real mounts and namespaces)")


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    """A running Docker engine (started for the session when none is running)."""
    engine = Dockerd(tmp_path_factory.mktemp("dockerd") / "dockerd.log")
    engine.start()
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox rootfs directory made from Debian's busybox-static (shared; do not modify)."""
    require("busybox")
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")
