"""Running a command in a throwaway container made from an image (``pybuild run``).

The image's layers are unpacked into committed snapshots (shared with builds), an active
snapshot is prepared on top and mounted, and the command runs in the builder's namespace
sandbox with that mount as its root. The active snapshot is removed afterwards, however the
run ends, so nothing the command wrote is kept.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import BuildError, DockerfileError
from builder.executor import NamespaceExecutor, RunSpec
from builder.executor.protocol import ExtraHost, Network
from builder.fileops.users import read_passwd, resolve_user
from builder.limits import Limits
from builder.localimages import LocalImage
from builder.store import BuildStore, temp_key, unpack_layers
from layerstore.snapshots.session import mounted_snapshot

__all__ = ["DEFAULT_PATH", "RunOptions", "command_line", "environment", "run_container",
           "run_spec"]

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


def run_container(store: BuildStore, image: LocalImage, options: RunOptions) -> int:
    """Run the command ``options`` and the image give; return its exit status (125 when the
    sandbox could not start it). When a resource limit made it fail (the OOM killer, the
    process limit), a line on stderr says which."""
    argv = command_line(image, options.entrypoint, options.command)
    chain = unpack_layers(store, image.layers, image.stored.image.rootfs.diff_ids)
    with mounted_snapshot(store.snapshots, temp_key("active"), chain,
                          temp_dir=store.tmp) as rootfs:
        spec = run_spec(image, rootfs, argv, options)
        result = NamespaceExecutor().run(spec, rootfs)
    if result.stopped_by:
        print(f"pybuild: the container {result.stopped_by} (exit code {result.exit_code})",
              file=sys.stderr)
    return result.exit_code


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
