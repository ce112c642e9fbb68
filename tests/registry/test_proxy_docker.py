"""docker's ``registry-mirrors`` pointed at our registry in mirror mode: a Docker engine
started by the test pulls ``busybox`` (``docker.io/library/busybox``) and a Debian image
through it from a CNCF distribution upstream, pulls them again without touching the
upstream, and busybox once more with the upstream stopped."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from registry.testing.deadline import time_limit
from registry.testing.processes import RegistryProcess, ours
from tests.builder.bases import BaseImages
from tests.peers import require
from tests.registry.projects_env import registry_cmd
from tests.registry.proxy_env import PrivateDockerd, Upstream, mirror, start_upstream
from tests.registry.server import REPO_ROOT


@dataclass
class Setup:
    """The upstream, our mirror of it and a Docker engine using the mirror."""

    upstream: Upstream
    cache: RegistryProcess
    engine: PrivateDockerd


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Iterator[Setup]:
    """Start the three."""
    tmp = tmp_path_factory.mktemp("proxy-docker")
    upstream = start_upstream(tmp / "upstream", busybox_rootfs)
    cache = mirror(tmp / "cache" / "root", upstream.proxy.url).start()
    engine = PrivateDockerd(tmp / "engine", {"registry-mirrors": [cache.url],
                                             "insecure-registries": [cache.address]})
    try:
        engine.start()
        yield Setup(upstream, cache, engine)
    finally:
        engine.stop()
        cache.stop()
        upstream.stop()


def repo_digests(engine: PrivateDockerd, image: str) -> list[str]:
    """The ``RepoDigests`` of a local image."""
    out = engine.docker("image", "inspect", "--format", "{{json .RepoDigests}}", image).stdout
    return list(json.loads(out))


def test_docker_pulls_busybox_through_the_mirror(setup: Setup) -> None:
    engine, upstream = setup.engine, setup.upstream
    with time_limit(300):
        engine.docker("pull", "busybox")
        assert repo_digests(engine, "busybox") == [f"busybox@{upstream.busybox}"]
        assert upstream.proxy.count("GET", "/v2/library/busybox/blobs/") >= 2
        engine.docker("run", "--rm", "--network", "none", "busybox", "true")


def test_the_second_pull_does_not_touch_the_upstream(setup: Setup) -> None:
    engine, upstream = setup.engine, setup.upstream
    with time_limit(300):
        before = upstream.proxy.count()
        engine.docker("rmi", "busybox")
        engine.docker("pull", "busybox")
        assert repo_digests(engine, "busybox") == [f"busybox@{upstream.busybox}"]
        assert upstream.proxy.count() == before, upstream.proxy.requests[before:]


def test_docker_pulls_a_debian_image_through_the_mirror(setup: Setup,
                                                        base_images: BaseImages) -> None:
    """A Debian image (debootstrap minbase) pushed to the upstream pulls and runs through
    the mirror; pulled again, every blob comes from the cache."""
    engine, upstream = setup.engine, setup.upstream
    debian = base_images.get("debian:bookworm")
    with time_limit(600):
        pushed = subprocess.run([require("skopeo"), "copy", "--dest-tls-verify=false",
                                 f"docker-archive:{debian.archive}",
                                 f"docker://{upstream.registry.address}/library/debian:bookworm"],
                                capture_output=True, text=True, timeout=600)
        assert pushed.returncode == 0, pushed.stderr
        engine.docker("pull", "debian:bookworm")
        assert upstream.proxy.count("GET", "/v2/library/debian/blobs/") >= 2
        out = engine.docker("run", "--rm", "--network", "none", "debian:bookworm",
                            "cat", "/etc/debian_version").stdout
        assert out.startswith("12."), out
        before = upstream.proxy.count()
        engine.docker("rmi", "debian:bookworm")
        engine.docker("pull", "debian:bookworm")
        assert upstream.proxy.count() == before, upstream.proxy.requests[before:]


def test_docker_pulls_through_a_proxy_cache_project(setup: Setup, tmp_path: Path) -> None:
    engine, upstream = setup.engine, setup.upstream
    root = tmp_path / "root"
    with time_limit(300):
        made = registry_cmd(root, "project", "create", "hub", "--public", "--proxy",
                            upstream.proxy.url)
        assert made.returncode == 0, made.stderr
        with ours(root, workers=1, env={"PYTHONPATH": str(REPO_ROOT)}) as projects:
            image = f"{projects.address}/hub/library/busybox:latest"
            engine.docker("pull", image)
            assert f"{projects.address}/hub/library/busybox@{upstream.busybox}" in \
                repo_digests(engine, image)
            engine.docker("rmi", image)

def test_with_the_upstream_stopped_the_cached_image_still_pulls(setup: Setup) -> None:
    engine, upstream = setup.engine, setup.upstream
    with time_limit(300):
        upstream.stop()
        engine.docker("rmi", "busybox")
        engine.docker("pull", "busybox")
        assert repo_digests(engine, "busybox") == [f"busybox@{upstream.busybox}"]
        missing = engine.docker("pull", "alpine:latest", check=False)
        assert missing.returncode != 0
