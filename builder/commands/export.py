"""``pybuild export``: a container's filesystem as a tar (see :mod:`builder.containerfs`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from builder.containerfs import export_container
from builder.containerstore import ContainerStore
from builder.errors import BuildError
from builder.exporters.archives import destination
from builder.store import BuildStore


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``export`` to the subcommands."""
    parser = sub.add_parser(
        "export", help="export a container's filesystem as a tar archive",
        description="Write the container's whole filesystem as a tar to stdout or FILE "
                    "(written to a temporary file and renamed into place).")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="write to FILE instead of stdout")
    parser.add_argument("container", metavar="CONTAINER", help="name or ID")
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Write the tar."""
    container = ContainerStore(store).get(args.container)
    if args.output is None and sys.stdout.isatty():
        raise BuildError("cowardly refusing to save to a terminal. Use the -o flag or "
                         "redirect")
    with destination(args.output) as out:
        export_container(store, container, out)
    return 0
