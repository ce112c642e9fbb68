"""``pybuild run``: run a command in a throwaway container made from an image.

The image's layers are unpacked into committed snapshots (shared with builds), an active
snapshot is prepared on top and mounted, and the command runs in the builder's namespace
sandbox with that mount as its root. The active snapshot is removed afterwards, however the
run ends, so nothing the command wrote is kept.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from builder.commands.common import LocalImage, find_image
from builder.errors import BuildError, DockerfileError
from builder.executor import NamespaceExecutor, RunSpec
from builder.fileops.users import read_passwd, resolve_user
from builder.store import BuildStore, temp_key, unpack_layers
from layerstore.assembly import host_architecture
from layerstore.snapshots.session import mounted_snapshot

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``run`` to the subcommands."""
    parser = sub.add_parser(
        "run", help="run a command in a new container",
        description="Run a command in a throwaway container made from IMAGE, in the same "
                    "sandbox as RUN steps (own mount, PID, UTS and IPC namespaces). The "
                    "command is the image's Entrypoint followed by its Cmd, or by COMMAND "
                    "when given. Its stdout and stderr are printed on stdout and its exit "
                    "status is pybuild's. Standard input is not connected. The container's "
                    "files are always removed when it ends; --rm is accepted for docker "
                    "compatibility.")
    parser.add_argument("--rm", action="store_true",
                        help="remove the container when it exits (always done)")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]",
                        help="set an environment variable; KEY alone takes it from this "
                             "environment (repeatable)")
    parser.add_argument("-w", "--workdir", metavar="DIR", help="working directory")
    parser.add_argument("-u", "--user", metavar="USER[:GROUP]",
                        help="user name or uid, optionally with a group name or gid")
    parser.add_argument("--network", choices=("default", "none", "host"), default="default",
                        help="network mode: none gives the container only a loopback "
                             "interface (default: default)")
    parser.add_argument("--entrypoint", metavar="COMMAND",
                        help="replace the image's Entrypoint (and drop its Cmd); '' clears it")
    parser.add_argument("--hostname", metavar="NAME", help="the container's host name")
    parser.add_argument("image", metavar="IMAGE", help="name or ID")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND",
                        help="command and arguments (replace the image's Cmd)")
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Run the command; return its exit status (125 when the sandbox could not start it)."""
    image = find_image(store, args.image)
    argv = command_line(image, args.entrypoint, args.command)
    platform = image.stored.image
    if platform.os != "linux":
        raise BuildError(f"image {args.image} is for {platform.os}, not linux")
    if platform.architecture != host_architecture():
        print(f"WARNING: image {args.image} is for {platform.architecture}; this machine is "
              f"{host_architecture()}", file=sys.stderr)
    chain = unpack_layers(store, image.layers, platform.rootfs.diff_ids)
    with mounted_snapshot(store.snapshots, temp_key("active"), chain,
                          temp_dir=store.tmp) as rootfs:
        spec = run_spec(image, rootfs, argv, args)
        result = NamespaceExecutor().run(spec, rootfs)
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
             args: argparse.Namespace) -> RunSpec:
    """The sandbox spec: environment, working directory and numeric user of the run."""
    config = image.stored.image.config
    user_text = args.user if args.user is not None else (config.user if config else "") or ""
    try:
        user = resolve_user(rootfs, user_text)
    except DockerfileError as exc:
        raise BuildError(exc.message) from None
    env = environment(tuple(config.env or ()) if config else (), args.env)
    names = {e.partition("=")[0] for e in env}
    if "PATH" not in names:
        env = (DEFAULT_PATH, *env)
    hostname = args.hostname or uuid.uuid4().hex[:12]
    if "HOSTNAME" not in names:
        env = (*env, f"HOSTNAME={hostname}")
    if "HOME" not in names:
        env = (*env, f"HOME={_home(rootfs, user.uid)}")
    workdir = args.workdir or (config.working_dir if config else None) or "/"
    if not workdir.startswith("/"):
        raise BuildError(f"the working directory {workdir!r} must be an absolute path")
    return RunSpec(args=argv, env=env, cwd=workdir, user=f"{user.uid}:{user.gid}",
                   groups=user.additional_gids,
                   hostname=hostname, network=args.network)


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
