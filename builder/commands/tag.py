"""``pybuild tag``: give an image another name."""

from __future__ import annotations

import argparse
import sys

from builder.commands.common import check_name, familiar_name, find_image
from builder.store import BuildStore


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tag`` to the subcommands."""
    parser = sub.add_parser(
        "tag", help="name an image",
        description="Point TARGET_IMAGE at the image SOURCE_IMAGE names (by name or ID); a "
                    "name already in use is moved. Names are kept as docker shows them "
                    "(docker.io/library/busybox is busybox:latest).")
    parser.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    parser.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Store the new name; prints nothing, as docker does."""
    target = familiar_name(check_name(args.target))
    image = find_image(store, args.source)
    store.images.put(target, image.target)
    return 0
