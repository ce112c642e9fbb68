"""``pybuild logs``: what a detached container printed (see :mod:`builder.detach`)."""

from __future__ import annotations

import argparse
import shutil
import sys

from builder.containerstore import ContainerStore
from builder.store import BuildStore


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``logs`` to the subcommands."""
    parser = sub.add_parser(
        "logs", help="print the output of a container run with -d",
        description="Print what a container started with 'pybuild run -d' wrote on its "
                    "stdout and stderr (interleaved as written). A container run in the "
                    "foreground printed its output there; nothing is kept for it.")
    parser.add_argument("container", metavar="CONTAINER", help="name or ID")
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Copy the log to stdout."""
    containers = ContainerStore(store)
    container = containers.get(args.container)
    try:
        with containers.log_path(container).open("rb") as log:
            shutil.copyfileobj(log, sys.stdout.buffer)
    except FileNotFoundError:
        pass
    sys.stdout.buffer.flush()
    return 0
