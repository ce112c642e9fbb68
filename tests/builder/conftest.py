"""Session fixtures of the builder tests: the locally made base images, loaded where each tool
looks for them, and the images the examples build (each built once per session and tool)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from builder.store import BuildStore
from layerstore.assembly import assemble_image, history_entry
from layerstore.diff import write_tree
from layerstore.oci import Image, ImageConfig
from tests.builder.bases import (
    DOCKER,
    BaseImageError,
    BaseImages,
    load_into_docker,
    load_into_pybuild,
)
from tests.builder.examples import (
    CommandFailed,
    Example,
    Podman,
    build_with_buildkit,
    build_with_pybuild,
    parent_ours_tag,
    pybuild_command,
    pybuild_save,
    pybuild_to_docker,
)
from tests.peers import Dockerd, require


@pytest.fixture(scope="session")
def docker_bases(dockerd: Dockerd, base_images: BaseImages) -> BaseImages:
    """The base images, loaded into docker under their names (skipped when docker already
    holds them with the same IDs)."""
    try:
        load_into_docker(base_images)
    except BaseImageError as exc:
        pytest.fail(f"cannot load the base images into docker: {exc}")
    return base_images


@pytest.fixture(scope="session")
def pybuild_root(tmp_path_factory: pytest.TempPathFactory, base_images: BaseImages) -> Path:
    """A pybuild store root for the session holding only the base images."""
    root = tmp_path_factory.mktemp("pybuild-root")
    try:
        load_into_pybuild(base_images, root, pybuild_command())
    except BaseImageError as exc:
        pytest.fail(f"cannot put the base images into pybuild's store: {exc}")
    return root


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    """podman (with runc) on its own storage for the session."""
    require("podman")
    require("runc")
    return Podman(tmp_path_factory.mktemp("podman"))


@dataclass(frozen=True)
class _Failed:
    """A build that failed, by its message."""

    message: str


@dataclass
class _Once:
    """Results (or the failure) of a build, computed once per key."""

    results: dict[str, str | _Failed] = field(default_factory=dict)

    def get(self, key: str, make: Callable[[], str]) -> str:
        if key not in self.results:
            try:
                self.results[key] = make()
            except CommandFailed as exc:
                self.results[key] = _Failed(str(exc))
        result = self.results[key]
        if isinstance(result, _Failed):
            raise CommandFailed(result.message)
        return result


@dataclass(frozen=True)
class ExampleBuilds:
    """Each example built once per session by each tool; a failed build fails every test
    that needs it with the same message."""

    pybuild_root: Path
    workdir: Path
    _once: _Once = field(default_factory=_Once)

    def peer(self, example: Example) -> str:
        """Build with BuildKit (its parent first), without docker's build cache: like
        pybuild's store, it starts empty each session, so a date written by a RUN step
        (``useradd``'s /etc/shadow) is today's on both sides; the docker tag of the result."""
        return self._once.get(f"peer:{example.name}",
                              lambda: build_with_buildkit(example, no_cache=True))

    def ours(self, example: Example) -> str:
        """Build with pybuild (its parent first); the name in pybuild's store."""
        return self._once.get(f"ours:{example.name}",
                              lambda: build_with_pybuild(example, self.pybuild_root))

    def ours_archive(self, example: Example) -> Path:
        """pybuild's image saved as a docker-archive."""
        name = self.ours(example)
        dest = self.workdir / f"{example.name}.tar"
        return Path(self._once.get(f"archive:{example.name}", lambda: str(
            pybuild_save(self.pybuild_root, name, dest))))

    def ours_in_docker(self, example: Example) -> str:
        """pybuild's image saved and loaded into docker; its docker tag."""
        name = self.ours(example)
        return self._once.get(f"docker:{example.name}",
                              lambda: pybuild_to_docker(self.pybuild_root, name, self.workdir))

    def ours_parent_in_docker(self, example: Example) -> str:
        """pybuild's build of the example's parent, loaded into docker under a name of its
        own (the parent's tag there belongs to BuildKit's build)."""
        self.ours(example)
        name = parent_ours_tag(example)
        return self._once.get(f"docker-parent:{example.name}",
                              lambda: pybuild_to_docker(self.pybuild_root, name, self.workdir))

    def loaded_into_docker(self) -> list[str]:
        """The names of pybuild's images this session loaded into docker."""
        return [tag for key, tag in self._once.results.items()
                if key.startswith("docker") and isinstance(tag, str)]


@pytest.fixture(scope="session")
def example_builds(docker_bases: BaseImages, pybuild_root: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleBuilds]:
    """The examples' images, built on demand once per session with pybuild and BuildKit;
    pybuild's images loaded into docker are removed from it at the end."""
    builds = ExampleBuilds(pybuild_root, tmp_path_factory.mktemp("example-images"))
    yield builds
    for tag in builds.loaded_into_docker():
        subprocess.run([DOCKER, "rmi", tag], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def commands_store(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Path:
    """A store seeded once with the images the command tests use (see test_commands.seed)."""
    from tests.builder.test_commands import seed

    tmp = tmp_path_factory.mktemp("commands")
    seed(tmp / "store", busybox_rootfs, tmp / "work")
    return tmp / "store"


@pytest.fixture
def root(tmp_path: Path, commands_store: Path) -> Path:
    """A private copy of the command tests' seeded store."""
    dest = tmp_path / "store"
    shutil.copytree(commands_store, dest, symlinks=True)
    return dest


def seed_busybox(root: Path, rootfs: Path) -> None:
    """Put ``busybox:latest`` (one layer made from ``rootfs``) into the store at ``root``."""
    with BuildStore.open(root) as store:
        layer = write_tree(rootfs, store.content)
        image = Image(architecture="amd64", os="linux", config=ImageConfig(
            env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
            cmd=("sh",)), history=(history_entry("busybox rootfs"),))
        stored = assemble_image(store.content, image, [layer])
        store.images.put("busybox:latest", stored.manifest)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Path:
    root = tmp_path_factory.mktemp("seed") / "store"
    seed_busybox(root, busybox_rootfs)
    return root


@pytest.fixture
def store_root(tmp_path: Path, seeded: Path) -> Path:
    """A fresh store holding only busybox:latest."""
    root = tmp_path / "store"
    shutil.copytree(seeded, root, symlinks=True)
    return root
