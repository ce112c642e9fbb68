"""Shared fixtures: the root check (all but the ``unit`` tier need root), the Docker engine,
locally made base root filesystems."""

from __future__ import annotations

import os
import signal
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from layerstore.testing.rootfs import make_busybox_rootfs
from registry.testing.processes import RegistryProcess
from tests.builder.bases import BaseImageError, BaseImages, make_base_images
from tests.peers import Dockerd, require

# Commands run in the test process (monkeypatches, captured output), never in a pybuild
# daemon a user may have running; tests/builder/test_daemon.py starts its own.
os.environ["PYBUILD_NO_DAEMON"] = "1"

# A shell without job control starts a background command (``bash scripts/test.sh &``, CI
# runners) with SIGINT ignored, and an ignored signal stays ignored across exec: every
# pybuild the tests start would then ignore the SIGINT of the Ctrl-C tests, as Python
# leaves an inherited SIG_IGN alone. A Python handler is reset to the default on exec, so
# with this one the programs the tests start see SIGINT as a foreground job does.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Without root only the unit tier (tests marked ``unit``: pure code, no mounts,
    namespaces, Docker engine or peers) can run; refuse a selection holding anything else."""
    if os.geteuid() == 0:
        return
    heavy = [item.nodeid for item in session.items if item.get_closest_marker("unit") is None]
    if heavy:
        raise pytest.UsageError(
            f"{len(heavy)} selected tests need root (real mounts, namespaces and peers), "
            f"{heavy[0]} first; as another user run only the unit tier: "
            "bash scripts/test.sh --unit (pytest -m unit)")


def _servers(values: object, depth: int = 0) -> Iterator[RegistryProcess]:
    """The registry processes among a test's fixture values: a server itself, one it wraps
    (``.proc``) or one in a tuple."""
    if isinstance(values, RegistryProcess):
        yield values
    elif isinstance(getattr(values, "proc", None), RegistryProcess):
        yield values.proc  # type: ignore[attr-defined]
    elif isinstance(values, tuple | list) and depth < 2:
        for value in values:
            yield from _servers(value, depth + 1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, object, None]:
    """A failed test that used a registry server shows the server's state (running and
    listening, or how it ended) and the tail of its log, so a server that died or stopped
    listening under a test can be told from a test that failed on its own."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    seen: set[int] = set()
    for server in _servers(tuple(funcargs.values())):
        if id(server) in seen:
            continue
        seen.add(id(server))
        report.sections.append((f"registry {server.address} ({server.state()})",
                                f"{server.log_path}, last lines:\n{server.log_tail()}"))


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


@pytest.fixture(scope="session")
def base_images(tmp_path_factory: pytest.TempPathFactory) -> BaseImages:
    """``busybox:latest`` and ``debian:bookworm`` as docker-archives (the Debian rootfs comes
    from the debootstrap cache under /var/cache/pybuild-tests/, made on first use)."""
    require("busybox")
    require("debootstrap")
    try:
        return make_base_images(tmp_path_factory.mktemp("base-images"))
    except BaseImageError as exc:
        pytest.fail(f"cannot make the base images: {exc}")
