"""``pybuild run``: run a command in a throwaway container made from an image (see
:mod:`builder.containers`)."""

from __future__ import annotations

import argparse
import sys

from builder import config, entitlements
from builder.commands.build import extra_hosts
from builder.commands.common import find_image
from builder.commands.limitflags import add_limit_flags, limits_from
from builder.containers import RunOptions, run_container
from builder.errors import BuildError
from builder.store import BuildStore
from layerstore.assembly import host_architecture


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``run`` to the subcommands."""
    parser = sub.add_parser(
        "run", help="run a command in a new container",
        description="Run a command in a container made from IMAGE, in the same "
                    "sandbox as RUN steps (own mount, PID, UTS, IPC and network namespaces). The "
                    "command is the image's Entrypoint followed by its Cmd, or by COMMAND "
                    "when given. Its stdout and stderr are printed on stdout and its exit "
                    "status is pybuild's. Standard input is not connected. Without --rm the "
                    "container and its files stay when it ends, for 'pybuild ps -a', "
                    "'commit', 'export', 'cp' and 'rm'.")
    parser.add_argument("--rm", action="store_true",
                        help="remove the container and its files when it exits")
    parser.add_argument("-d", "--detach", action="store_true",
                        help="run the container in the background (its output goes to "
                             "'pybuild logs') and print its ID")
    parser.add_argument("--name", metavar="NAME",
                        help="name the container (default: a generated name)")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]",
                        help="set an environment variable; KEY alone takes it from this "
                             "environment (repeatable)")
    parser.add_argument("-w", "--workdir", metavar="DIR", help="working directory")
    parser.add_argument("-u", "--user", metavar="USER[:GROUP]",
                        help="user name or uid, optionally with a group name or gid")
    parser.add_argument("--network", choices=("default", "none", "host"), default="default",
                        help="network mode: default has outbound access through a user-mode "
                             "stack, none only a loopback interface, host (needs --allow "
                             "network.host) is the host's network (default: default)")
    parser.add_argument("--allow", action="append", default=[], metavar="ENTITLEMENT",
                        help="grant an entitlement: network.host (repeatable)")
    parser.add_argument("--add-host", action="append", default=[], metavar="HOST:IP",
                        help="add a line to /etc/hosts; IP may be host-gateway (repeatable)")
    parser.add_argument("--entrypoint", metavar="COMMAND",
                        help="replace the image's Entrypoint (and drop its Cmd); '' clears it")
    parser.add_argument("--hostname", metavar="NAME", help="the container's host name")
    parser.add_argument("--platform", metavar="OS/ARCH",
                        help="run the image of this platform from a multi-platform image; a "
                             "foreign one runs under qemu-user-static")
    add_limit_flags(parser)
    parser.add_argument("image", metavar="IMAGE", help="name or ID")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND",
                        help="command and arguments (replace the image's Cmd)")
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Run the command; return its exit status (125 when the sandbox could not start it)."""
    settings = config.load()
    granted = entitlements.parse(args.allow)
    if args.network == "host":
        granted = granted.union(settings.entitlements)
        granted.require(entitlements.NETWORK_HOST, "--network=host")
    hosts = extra_hosts(args.add_host)
    run_limits = limits_from(args, settings)
    image = find_image(store, args.image)
    if args.platform:
        from builder.platforms_run import prepare_platform

        image = prepare_platform(store, image, args.platform, args.image)
    platform = image.stored.image
    if platform.os != "linux":
        raise BuildError(f"image {args.image} is for {platform.os}, not linux")
    if platform.architecture != host_architecture() and not args.platform:
        print(f"WARNING: image {args.image} is for {platform.architecture}; this machine is "
              f"{host_architecture()}", file=sys.stderr)
    options = RunOptions(env=tuple(args.env), workdir=args.workdir, user=args.user,
                         network=args.network, entrypoint=args.entrypoint,
                         hostname=args.hostname, command=tuple(args.command),
                         limits=run_limits, extra_hosts=hosts, remove=args.rm,
                         name=args.name, image_ref=args.image, detach=args.detach)
    return run_container(store, image, options)
