"""``pybuild rm``: remove containers (see :mod:`builder.containerstore`)."""

from __future__ import annotations

import argparse
import sys

from builder.commands.common import print_error
from builder.containerstore import ContainerStore, remove_container
from builder.errors import BuildError
from builder.store import BuildStore


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rm`` to the subcommands."""
    parser = sub.add_parser(
        "rm", help="remove containers",
        description="Remove containers and their files. A running container (its 'pybuild "
                    "run' is still going) is refused unless -f kills it first (SIGKILL).")
    parser.add_argument("-f", "--force", action="store_true",
                        help="kill a running container before removing it")
    parser.add_argument("-v", "--volumes", action="store_true",
                        help="accepted for docker compatibility (containers have no volumes)")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER", help="name or ID")
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Remove each container, printing its name as given; 1 when any could not be."""
    containers = ContainerStore(store)
    status = 0
    for ref in args.containers:
        try:
            remove_container(store, containers.get(ref), force=args.force)
        except BuildError as exc:
            print_error(exc)
            status = 1
            continue
        print(ref)
    return status
