"""Running a command in a container made from an image (``pybuild run``).

The image's layers are unpacked into committed snapshots (shared with builds), an active
snapshot is prepared on top and mounted, and the command runs in the builder's namespace
sandbox with that mount as its root. With ``--rm`` the active snapshot is removed afterwards,
however the run ends, so nothing the command wrote is kept. Without it the snapshot and a
record of the container stay (:mod:`builder.containerstore`) for ``ps``, ``commit``,
``export``, ``cp`` and ``rm``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from builder.errors import BuildError, DockerfileError
from builder.executor import NamespaceExecutor, RunSpec
from builder.executor.protocol import ExtraHost, Network
from builder.fileops.users import read_passwd, resolve_user
from builder.limits import Limits
from builder.localimages import LocalImage
from builder.store import BuildStore, temp_key, unpack_layers
from layerstore.oci import ImageConfig
from layerstore.snapshots.mount import mounted
from layerstore.snapshots.session import mounted_snapshot

__all__ = ["DEFAULT_PATH", "RunOptions", "command_line", "container_config",
           "create_container", "environment", "run_container", "run_spec", "start_container"]

if TYPE_CHECKING:
    from builder.containerstore import Container

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class RunOptions:
    """What ``pybuild run`` may change about the image's defaults, and its resource
    limits."""

    env: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    network: Network = "default"
    entrypoint: str | None = None
    hostname: str | None = None
    command: tuple[str, ...] = ()
    extra_hosts: tuple[ExtraHost, ...] = ()
    limits: Limits = field(default_factory=Limits)
    remove: bool = True
    name: str | None = None
    image_ref: str = ""
    detach: bool = False


def run_container(store: BuildStore, image: LocalImage, options: RunOptions) -> int:
    """Run the command ``options`` and the image give; return its exit status (125 when the
    sandbox could not start it). When a resource limit made it fail (the OOM killer, the
    process limit), a line on stderr says which. Unless ``options.remove``, the container
    stays afterwards (see the module docstring); with ``options.detach`` it runs in the
    background, its output going to its log, and its ID is printed."""
    argv = command_line(image, options.entrypoint, options.command)
    chain = unpack_layers(store, image.layers, image.stored.image.rootfs.diff_ids)
    if options.detach:
        from builder.detach import run_detached

        return run_detached(store, image, options, argv, chain)
    if not options.remove:
        container = create_container(store, image, options, argv, chain)
        return start_container(store, container, image, options)
    with mounted_snapshot(store.snapshots, temp_key("active"), chain,
                          temp_dir=store.tmp) as rootfs:
        spec = run_spec(image, rootfs, argv, options)
        result = NamespaceExecutor().run(spec, rootfs)
    return _report(result.exit_code, result.stopped_by)


def create_container(store: BuildStore, image: LocalImage, options: RunOptions,
                     argv: tuple[str, ...], chain: str | None) -> Container:
    """Record a container for the run and prepare its snapshot on the image's layers."""
    from builder.containerstore import ContainerStore

    containers = ContainerStore(store)
    container = containers.create(
        name=options.name, image=options.image_ref or image.short_id, image_id=image.id,
        manifest=image.stored.manifest, argv=argv, config=container_config(image, options))
    try:
        store.snapshots.prepare(container.snapshot, chain)
    except BaseException:
        containers.delete(container)
        raise
    return container


def start_container(store: BuildStore, container: Container, image: LocalImage,
                    options: RunOptions) -> int:
    """Run a created container's command on its snapshot; record its start and end."""
    from builder.containerstore import ContainerStore

    containers = ContainerStore(store)
    if options.hostname is None:
        options = replace(options, hostname=container.short_id)
    argv = container.command
    point = tempfile.mkdtemp(prefix="container-", dir=store.tmp)
    exit_code: int | None = None
    try:
        with mounted(store.snapshots.mounts(container.snapshot), point) as rootfs:
            spec = run_spec(image, rootfs, argv, options)
            container = containers.started(container, rootfs)
            result = NamespaceExecutor().run(spec, rootfs)
            exit_code = result.exit_code
    finally:
        if container.state == "running":
            containers.finished(container, 137 if exit_code is None else exit_code)
        with contextlib.suppress(OSError):
            os.rmdir(point)
        _tidy_etc(store.snapshots.upperdir(container.snapshot))
    return _report(result.exit_code, result.stopped_by)


def _tidy_etc(upper: Path) -> None:
    """Drop ``/etc`` from the container's changes when only the sandbox touched it (it
    makes mount points for hosts, resolv.conf and hostname and removes them again), so a
    commit holds what the command changed, as docker's does."""
    from layerstore.archive.whiteout import is_overlay_opaque

    etc = upper / "etc"
    with contextlib.suppress(OSError):
        if (etc.is_dir() and not etc.is_symlink() and not any(etc.iterdir())
                and not is_overlay_opaque(os.fsencode(etc))):
            etc.rmdir()


def container_config(image: LocalImage, options: RunOptions) -> ImageConfig:
    """The config of a container as docker keeps it (and ``commit`` writes it): the image's
    with the run's environment (``-e`` settings first, then the image's others), command,
    entrypoint, working directory and user."""
    config = image.stored.image.config or ImageConfig()
    env: dict[str, str] = {}
    for item in environment((), options.env):
        key, _, value = item.partition("=")
        env[key] = value
    for item in config.env or ():
        key, _, value = item.partition("=")
        env.setdefault(key, value)
    entrypoint = config.entrypoint
    cmd = config.cmd
    if options.entrypoint is not None:
        entrypoint = (options.entrypoint,) if options.entrypoint else None
        cmd = None
    if options.command:
        cmd = tuple(options.command)
    return replace(config, env=tuple(f"{k}={v}" for k, v in env.items()) or None,
                   entrypoint=entrypoint, cmd=cmd,
                   working_dir=options.workdir or config.working_dir,
                   user=options.user if options.user is not None else config.user)


def _report(exit_code: int, stopped_by: str | None) -> int:
    if stopped_by:
        print(f"pybuild: the container {stopped_by} (exit code {exit_code})",
              file=sys.stderr)
    return exit_code


def command_line(image: LocalImage, entrypoint: str | None, command: Sequence[str]
                 ) -> tuple[str, ...]:
    """Entrypoint + Cmd as docker combines them: ``--entrypoint`` replaces the image's
    entrypoint and drops its Cmd; a command given on the command line replaces Cmd."""
    config = image.stored.image.config
    image_entrypoint = tuple(config.entrypoint or ()) if config else ()
    cmd = tuple(config.cmd or ()) if config else ()
    if entrypoint is not None:
        image_entrypoint = (entrypoint,) if entrypoint else ()
        cmd = ()
    if command:
        cmd = tuple(command)
    argv = image_entrypoint + cmd
    if not argv:
        name = image.names[0] if image.names else image.short_id
        raise BuildError(f"no command specified: image {name} has no Entrypoint or Cmd; "
                         "give one after the image")
    return argv


def run_spec(image: LocalImage, rootfs: Path, argv: tuple[str, ...],
             options: RunOptions) -> RunSpec:
    """The sandbox spec: environment, working directory and numeric user of the run."""
    config = image.stored.image.config
    image_user = (config.user if config else "") or ""
    user_text = options.user if options.user is not None else image_user
    try:
        user = resolve_user(rootfs, user_text)
    except DockerfileError as exc:
        raise BuildError(exc.message) from None
    env = environment(tuple(config.env or ()) if config else (), options.env)
    names = {e.partition("=")[0] for e in env}
    if "PATH" not in names:
        env = (DEFAULT_PATH, *env)
    hostname = options.hostname or uuid.uuid4().hex[:12]
    if "HOSTNAME" not in names:
        env = (*env, f"HOSTNAME={hostname}")
    if "HOME" not in names:
        env = (*env, f"HOME={_home(rootfs, user.uid)}")
    workdir = options.workdir or (config.working_dir if config else None) or "/"
    if not workdir.startswith("/"):
        raise BuildError(f"the working directory {workdir!r} must be an absolute path")
    return RunSpec(args=argv, env=env, cwd=workdir, user=f"{user.uid}:{user.gid}",
                   groups=user.process_groups,
                   hostname=hostname, network=options.network, limits=options.limits,
                   extra_hosts=options.extra_hosts)


def environment(image_env: Sequence[str], flags: Sequence[str]) -> tuple[str, ...]:
    """The image's environment with ``-e`` settings applied in order (a later one wins;
    ``-e KEY`` copies KEY from this environment when it is set here)."""
    env: dict[str, str] = {}
    for item in image_env:
        key, _, value = item.partition("=")
        env[key] = value
    for item in flags:
        key, eq, value = item.partition("=")
        if not key:
            raise BuildError(f"-e {item!r}: expected KEY=VALUE or KEY")
        if eq:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return tuple(f"{k}={v}" for k, v in env.items())


def _home(rootfs: Path, uid: int) -> str:
    for entry in read_passwd(rootfs):
        if entry.uid == uid:
            return entry.home or "/"
    return "/"
