"""The example Dockerfiles (``examples/dockerfiles/<name>/``): loading their ``expect.json``,
building them with pybuild and with BuildKit, running them, and comparing what came out.

Trees are compared as docker sees them: both images are exported through
``docker create`` + ``docker export`` and described with
:func:`layerstore.testing.tree.tar_manifest` (paths, types, modes, owners, content hashes,
link targets; not timestamps). Configs are compared field by field from
``docker image inspect``.

Nothing here depends on pytest: the build benchmark uses the same code. A failing command
raises :class:`CommandFailed` with its output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from layerstore.testing.tree import Entry, differences, tar_manifest
from tests.builder.bases import DOCKER

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "examples" / "dockerfiles"
BUILD_TIMEOUT = 600
RUN_TIMEOUT = 120

# What `docker create` + `docker export` add to every container's tree, on both sides alike.
EXPORT_NOISE = frozenset({".dockerenv", "dev", "proc", "sys", "etc/hosts", "etc/hostname",
                          "etc/resolv.conf", "etc/mtab"})
CONFIG_FIELDS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes",
                 "Labels", "StopSignal", "Healthcheck", "OnBuild", "Shell")
PODMAN_CONF = "[containers]\ndefault_ulimits = []\n"
PEER_PREFIX = "pybuild-peer"
OURS_PREFIX = "pybuild-ours"

_KEYS = frozenset({"description", "dockerfile", "context", "peer_dockerfile", "target",
                   "build_args", "secrets", "parent", "run", "stdout", "match", "mount_stubs"})


class ExampleError(ValueError):
    """An example directory or its ``expect.json`` is malformed."""


class CommandFailed(AssertionError):
    """A build, run or export command failed; the message holds its output."""


@dataclass(frozen=True)
class _Fields:
    """Typed access to the fields of one ``expect.json``."""

    where: Path
    directory: Path
    doc: dict[str, Any]

    def path(self, value: Any, key: str) -> Path:
        """``value`` as an existing path inside the example directory."""
        if not isinstance(value, str) or value.startswith("/") or ".." in value.split("/"):
            raise ExampleError(f"{self.where}: {key} must be a relative path inside the example")
        full = self.directory / value
        if not full.exists():
            raise ExampleError(f"{self.where}: {key} {value!r} does not exist")
        return full

    def strings(self, key: str) -> dict[str, str]:
        """The object ``key`` (empty when absent), which must map strings to strings."""
        value = self.doc.get(key) or {}
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ExampleError(f"{self.where}: {key} must map strings to strings")
        return value


@dataclass(frozen=True)
class Parent:
    """An image an example builds FROM that has to be built first, under ``tag``."""

    dockerfile: Path
    context: Path
    tag: str


@dataclass(frozen=True)
class Example:
    """One example directory and how to build and check it."""

    name: str
    directory: Path
    description: str
    dockerfile: Path
    context: Path
    peer_dockerfile: Path | None
    target: str | None
    build_args: tuple[tuple[str, str], ...]
    secrets: tuple[tuple[str, Path], ...]
    parent: Parent | None
    run: tuple[str, ...] | None
    stdout: tuple[str, ...]
    match: str
    mount_stubs: tuple[str, ...] = ()

    @classmethod
    def load(cls, directory: Path) -> Example:
        """Read ``directory/expect.json``; raise :class:`ExampleError` naming what is wrong."""
        where = directory / "expect.json"
        try:
            doc = json.loads(where.read_text())
        except (OSError, ValueError) as exc:
            raise ExampleError(f"{where}: {exc}") from None
        if not isinstance(doc, dict):
            raise ExampleError(f"{where}: not a JSON object")
        unknown = set(doc) - _KEYS
        if unknown:
            raise ExampleError(f"{where}: unknown keys {sorted(unknown)}")

        fields = _Fields(where, directory, doc)
        parent = None
        if doc.get("parent") is not None:
            p = doc["parent"]
            if not isinstance(p, dict) or not isinstance(p.get("tag"), str):
                raise ExampleError(f"{where}: parent needs at least a tag")
            parent = Parent(fields.path(p.get("dockerfile", "Dockerfile"), "parent.dockerfile"),
                            fields.path(p.get("context", "."), "parent.context"), p["tag"])
        run = doc.get("run")
        if run is not None and not (isinstance(run, list) and run
                                    and all(isinstance(a, str) for a in run)):
            raise ExampleError(f"{where}: run must be null or a non-empty list of strings")
        stdout = doc.get("stdout", "")
        expected = [stdout] if isinstance(stdout, str) else stdout
        if not isinstance(expected, list) or not all(isinstance(s, str) for s in expected):
            raise ExampleError(f"{where}: stdout must be a string or a list of strings")
        match = doc.get("match", "exact")
        if match not in ("exact", "contains") or (match == "exact" and len(expected) != 1):
            raise ExampleError(f"{where}: match must be 'exact' (one stdout string) or "
                               "'contains'")
        target = doc.get("target")
        if target is not None and not isinstance(target, str):
            raise ExampleError(f"{where}: target must be null or a stage name")
        peer = doc.get("peer_dockerfile")
        stubs = doc.get("mount_stubs") or []
        if not isinstance(stubs, list) or not all(isinstance(p, str) for p in stubs):
            raise ExampleError(f"{where}: mount_stubs must be a list of paths")
        return cls(
            name=directory.name, directory=directory,
            description=str(doc.get("description", "")),
            dockerfile=fields.path(doc.get("dockerfile", "Dockerfile"), "dockerfile"),
            context=fields.path(doc.get("context", "."), "context"),
            peer_dockerfile=None if peer is None else fields.path(peer, "peer_dockerfile"),
            target=target,
            build_args=tuple(sorted(fields.strings("build_args").items())),
            secrets=tuple((k, fields.path(v, f"secrets.{k}"))
                          for k, v in sorted(fields.strings("secrets").items())),
            parent=parent, run=None if run is None else tuple(run),
            stdout=tuple(expected), match=match,
            mount_stubs=tuple(p.strip("/") for p in stubs),
        )

    @property
    def peer_tag(self) -> str:
        """The name BuildKit's image gets in docker."""
        return f"{PEER_PREFIX}/{self.name}:latest"

    @property
    def ours_tag(self) -> str:
        """The name pybuild's image gets (in pybuild's store and, once loaded, in docker)."""
        return f"{OURS_PREFIX}/{self.name}:latest"

    def output_problem(self, stdout: str) -> str | None:
        """Why ``stdout`` is not the expected output, or None when it is."""
        if self.match == "exact":
            if stdout.strip() == self.stdout[0].strip():
                return None
            return f"expected exactly:\n{self.stdout[0]!r}\ngot:\n{stdout!r}"
        missing = [s for s in self.stdout if s not in stdout]
        return None if not missing else f"missing {missing!r} in output:\n{stdout}"


def all_examples(directory: Path = EXAMPLES_DIR) -> list[Example]:
    """Every example below ``directory`` (a subdirectory with an ``expect.json``), by name."""
    return [Example.load(d) for d in sorted(directory.iterdir())
            if d.is_dir() and (d / "expect.json").exists()]


def example_names(directory: Path = EXAMPLES_DIR) -> list[str]:
    """The names of the examples, for test parametrization."""
    return [d.name for d in sorted(directory.iterdir())
            if d.is_dir() and (d / "expect.json").exists()]


def run(argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None,
        stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a command with a time limit; raise :class:`CommandFailed` when it fails."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, timeout=timeout, input=stdin,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        raise CommandFailed(f"{' '.join(argv)}: no answer within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise CommandFailed(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                            f"{proc.stdout.decode(errors='replace')[-2000:]}"
                            f"{proc.stderr.decode(errors='replace')[-4000:]}")
    return proc


def docker(*args: str, timeout: float = BUILD_TIMEOUT) -> subprocess.CompletedProcess[bytes]:
    """Debian's docker client (with BuildKit on)."""
    return run([DOCKER, *args], timeout=timeout, env={"DOCKER_BUILDKIT": "1"})


def pybuild_command() -> list[str]:
    """How to start pybuild: the venv's ``pybuild`` script, else ``python -m builder.cli``."""
    script = Path(sys.executable).with_name("pybuild")
    return [str(script)] if script.exists() else [sys.executable, "-m", "builder.cli"]


def build_options(example: Example) -> list[str]:
    """The ``--build-arg``, ``--secret`` and ``--target`` options of the example (the same
    spelling for docker, pybuild and buildah)."""
    argv = []
    for key, value in example.build_args:
        argv += ["--build-arg", f"{key}={value}"]
    for ident, src in example.secrets:
        argv += ["--secret", f"id={ident},src={src}"]
    if example.target:
        argv += ["--target", example.target]
    return argv


def buildkit_argv(example: Example, tag: str, *, parent: bool = False,
                  no_cache: bool = False) -> list[str]:
    """``docker build`` of the example (or of its parent) with BuildKit; the example's
    ``peer_dockerfile`` when it has one."""
    argv = [DOCKER, "build", "--progress", "plain", "-t", tag]
    if no_cache:
        argv.append("--no-cache")
    if parent:
        assert example.parent is not None
        return [*argv, "-f", str(example.parent.dockerfile), str(example.parent.context)]
    dockerfile = example.peer_dockerfile or example.dockerfile
    return [*argv, *build_options(example), "-f", str(dockerfile), str(example.context)]


def pybuild_argv(example: Example, root: Path, tags: Sequence[str], *, parent: bool = False,
                 no_cache: bool = False) -> list[str]:
    """``pybuild --root ROOT build`` of the example (or of its parent) with its own Dockerfile."""
    argv = [*pybuild_command(), "--root", str(root), "build", "--progress", "plain"]
    for tag in tags:
        argv += ["-t", tag]
    if no_cache:
        argv.append("--no-cache")
    if parent:
        assert example.parent is not None
        return [*argv, "-f", str(example.parent.dockerfile), str(example.parent.context)]
    return [*argv, *build_options(example), "-f", str(example.dockerfile),
            str(example.context)]


def build_with_buildkit(example: Example, *, no_cache: bool = False) -> str:
    """Build the example (its parent first) with BuildKit; return the image's tag."""
    env = {"DOCKER_BUILDKIT": "1"}
    if example.parent is not None:
        run(buildkit_argv(example, example.parent.tag, parent=True, no_cache=no_cache),
            timeout=BUILD_TIMEOUT, env=env)
    run(buildkit_argv(example, example.peer_tag, no_cache=no_cache), timeout=BUILD_TIMEOUT,
        env=env)
    return example.peer_tag


def parent_ours_tag(example: Example) -> str:
    """The second name pybuild gives the example's parent, so it can be saved and loaded into
    docker without taking over the parent's tag there."""
    return f"{OURS_PREFIX}/{example.name}-parent:latest"


def build_with_pybuild(example: Example, root: Path, *, no_cache: bool = False) -> str:
    """Build the example (its parent first, under the parent's tag and under
    :func:`parent_ours_tag`) with pybuild in store ``root``; return the image's tag."""
    if example.parent is not None:
        run(pybuild_argv(example, root, [example.parent.tag, parent_ours_tag(example)],
                         parent=True, no_cache=no_cache), timeout=BUILD_TIMEOUT)
    run(pybuild_argv(example, root, [example.ours_tag], no_cache=no_cache),
        timeout=BUILD_TIMEOUT)
    return example.ours_tag


def pybuild_save(root: Path, name: str, dest: Path, fmt: str = "docker") -> Path:
    """``pybuild save`` of one image into ``dest``."""
    run([*pybuild_command(), "--root", str(root), "save", "--format", fmt, "-o", str(dest),
         name], timeout=BUILD_TIMEOUT)
    return dest


def pybuild_to_docker(root: Path, name: str, workdir: Path) -> str:
    """Save pybuild's image ``name`` and ``docker load`` it (under the same name)."""
    archive = pybuild_save(root, name, workdir / f"{name.replace('/', '_')}.tar")
    out = docker("load", "-i", str(archive)).stdout.decode()
    if name.split(":")[0] not in out:
        raise CommandFailed(f"docker load of {archive} did not name {name}:\n{out}")
    return name


def run_in_docker(image: str, argv: Sequence[str] | None) -> str:
    """``docker run --rm`` the image (its default command when ``argv`` is None)."""
    return docker("run", "--rm", "--network", "none", image, *(argv or ()),
                  timeout=RUN_TIMEOUT).stdout.decode(errors="replace")


@contextmanager
def exported(image: str) -> Iterator[BinaryIO]:
    """``docker export`` of a container created from the image, as a temporary tar file.
    The container's working directory is ``/`` so docker does not make the image's
    WorkingDir for it."""
    cid = docker("create", "--workdir", "/", "--entrypoint", "/pybuild-export-placeholder",
                 image, timeout=RUN_TIMEOUT).stdout.decode().strip()
    try:
        with tempfile.TemporaryFile() as tar:
            proc = subprocess.run([DOCKER, "export", cid], stdout=tar, stderr=subprocess.PIPE,
                                  timeout=BUILD_TIMEOUT)
            if proc.returncode != 0:
                raise CommandFailed(f"docker export {cid} failed: {proc.stderr.decode()}")
            tar.seek(0)
            yield cast(BinaryIO, tar)
    finally:
        subprocess.run([DOCKER, "rm", "-v", cid], capture_output=True, timeout=RUN_TIMEOUT)


@dataclass(frozen=True)
class Tree:
    """An exported tree: every path's description, and which paths are hardlinked together
    (:func:`tar_manifest` gives a hardlink its target's description, so links are kept
    apart here)."""

    entries: dict[str, Entry]
    hardlinks: frozenset[frozenset[str]]


def _hardlink_groups(tar: BinaryIO) -> frozenset[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    with tarfile.open(fileobj=tar, mode="r|") as stream:
        for member in stream:
            if member.islnk():
                target = os.path.normpath(member.linkname.lstrip("/"))
                name = os.path.normpath(member.name.lstrip("/"))
                groups.setdefault(target, {target}).add(name)
    return frozenset(frozenset(g) for g in groups.values())


def export_tree(image: str) -> Tree:
    """The image's file tree as ``docker export`` gives it, without :data:`EXPORT_NOISE`."""
    with exported(image) as tar:
        entries = tar_manifest(tar, exclude=EXPORT_NOISE)
        tar.seek(0)
        return Tree(entries, _hardlink_groups(tar))


def export_contains(image: str, needle: bytes) -> bool:
    """True when ``needle`` occurs anywhere in the bytes of the image's exported tree."""
    if not needle:
        raise ValueError("an empty needle is in everything")
    tail = b""
    with exported(image) as tar:
        while chunk := tar.read(1 << 20):
            if needle in tail + chunk:
                return True
            tail = chunk[-(len(needle) - 1):] if len(needle) > 1 else b""
    return False


def secrets_found(example: Example, image: str) -> list[str]:
    """The ids of the example's secrets whose content (trailing newline aside) is anywhere in
    the image's tree."""
    return [ident for ident, src in example.secrets
            if export_contains(image, src.read_bytes().rstrip(b"\n"))]


def _normalized(value: Any) -> Any:
    return None if value in (None, "", [], {}) else value


def image_config(image: str) -> dict[str, Any]:
    """The Dockerfile-visible fields of the image's config (``docker image inspect``), with
    empty values as None."""
    doc = json.loads(docker("image", "inspect", image, timeout=RUN_TIMEOUT).stdout)[0]
    config = doc.get("Config") or {}
    return {key: _normalized(config.get(key)) for key in CONFIG_FIELDS}


def config_differences(ours: Mapping[str, Any], peer: Mapping[str, Any]) -> list[str]:
    """Fields whose values differ between two :func:`image_config` results."""
    return [f"{key}: ours {ours.get(key)!r} != BuildKit {peer.get(key)!r}"
            for key in CONFIG_FIELDS if ours.get(key) != peer.get(key)]


def image_differences(ours: str, peer: str, mount_stubs: Sequence[str] = ()) -> list[str]:
    """Tree and config differences between two images docker holds (empty when equal).

    ``mount_stubs`` are paths the peer may have and ours may lack: the empty directories
    BuildKit 0.8 leaves where it made mount points (newer BuildKit removes them).
    """
    out = [f"config {d}" for d in config_differences(image_config(ours), image_config(peer))]
    ours_tree, peer_tree = export_tree(ours), export_tree(peer)
    peer_entries = dict(peer_tree.entries)
    for stub in mount_stubs:
        if stub not in ours_tree.entries:
            peer_entries.pop(stub, None)
    out += [f"tree {d}" for d in differences(ours_tree.entries, peer_entries, limit=40)]
    for group in sorted(ours_tree.hardlinks ^ peer_tree.hardlinks, key=sorted):
        side = "ours" if group in ours_tree.hardlinks else "BuildKit's"
        out.append(f"hardlinks: only {side} links {sorted(group)} together")
    return out


@dataclass(frozen=True)
class Podman:
    """podman with its own storage under ``root`` and runc as the runtime."""

    root: Path

    def env(self) -> dict[str, str]:
        """The environment podman needs here (no default ulimits in this VM)."""
        conf = self.root / "containers.conf"
        if not conf.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            conf.write_text(PODMAN_CONF)
        return {"CONTAINERS_CONF": str(conf)}

    def argv(self, *args: str) -> list[str]:
        """A podman command line on this storage."""
        return ["podman", "--root", str(self.root / "storage"), "--runroot",
                str(self.root / "run"), "--storage-driver", "overlay", "--runtime", "runc",
                *args]

    def load(self, archive: Path) -> str:
        """``podman load`` a docker-archive; return the name podman gave the image."""
        out = run(self.argv("load", "-i", str(archive)), timeout=BUILD_TIMEOUT,
                  env=self.env()).stdout.decode()
        names = [line.split(":", 1)[1].strip().split(",")[0] for line in out.splitlines()
                 if line.startswith("Loaded image")]
        if not names:
            raise CommandFailed(f"podman load -i {archive} named no image:\n{out}")
        return names[-1]

    def run_image(self, image: str, argv: Sequence[str] | None) -> str:
        """``podman run --rm`` the image (its default command when ``argv`` is None)."""
        return run(self.argv("run", "--rm", "--network", "none", image, *(argv or ())),
                   timeout=RUN_TIMEOUT, env=self.env()).stdout.decode(errors="replace")
