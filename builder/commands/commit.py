"""``pybuild commit``: an image from a container's changes (see
:mod:`builder.containerimage`)."""

from __future__ import annotations

import argparse
import sys

from builder.changes import ALLOWED
from builder.commands.common import check_name, familiar_name
from builder.containerimage import commit_container
from builder.containerstore import ContainerStore
from builder.store import BuildStore


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``commit`` to the subcommands."""
    parser = sub.add_parser(
        "commit", help="create a new image from a container's changes",
        description="Store a new image: the container's image with one more layer holding "
                    "what the container changed, and the container's config (command, "
                    "environment, working directory, user as it ran) with the -c changes "
                    "applied. Prints the new image ID. The container is not paused: commit "
                    "a running container only when it is not writing.")
    parser.add_argument("-a", "--author", metavar="AUTHOR",
                        help='author (e.g. "Jane Doe <jane@example.com>")')
    parser.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION",
                        help=f"apply a Dockerfile instruction ({', '.join(ALLOWED)}) to the "
                             "config (repeatable)")
    parser.add_argument("-m", "--message", metavar="MESSAGE", help="commit message")
    parser.add_argument("-p", "--pause", action=argparse.BooleanOptionalAction, default=True,
                        help="accepted for docker compatibility (containers are not paused)")
    parser.add_argument("container", metavar="CONTAINER", help="name or ID")
    parser.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]",
                        help="name for the new image")
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Commit and print ``sha256:<image ID>``."""
    name = familiar_name(check_name(args.reference)) if args.reference else None
    container = ContainerStore(store).get(args.container)
    stored = commit_container(store, container, changes=args.change, message=args.message,
                              author=args.author)
    if name is not None:
        store.images.put(name, stored.manifest)
    print(stored.config.digest)
    return 0
