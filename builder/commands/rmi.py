"""``pybuild rmi``: remove image names."""

from __future__ import annotations

import argparse
import sys

from builder.commands.common import find_image, find_name, print_error
from builder.errors import BuildError
from builder.store import BuildStore
from layerstore.errors import LayerstoreError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rmi`` to the subcommands."""
    parser = sub.add_parser(
        "rmi", help="remove image names",
        description="Remove image names. Given by name, that name goes; given by ID, the "
                    "image's only name goes (all of its names with --force). The blobs and "
                    "unpacked layers stay until 'pybuild prune' frees them.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="name or ID")
    parser.add_argument("-f", "--force", action="store_true",
                        help="remove every name of an image given by ID")
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Untag each argument, printing ``Untagged: NAME``; an unknown one is an error line and
    makes the exit status 1, the others are still removed."""
    status = 0
    for ref in args.images:
        try:
            for name in _names_to_remove(store, ref, args.force):
                store.images.delete(name)
                print(f"Untagged: {name}")
        except (BuildError, LayerstoreError) as exc:
            print_error(exc)
            status = 1
    return status


def _names_to_remove(store: BuildStore, ref: str, force: bool) -> list[str]:
    record = find_name(store, ref)
    if record is not None:
        return [record.name]
    image = find_image(store, ref)
    if len(image.names) > 1 and not force:
        raise BuildError(f"image {image.short_id} has several names "
                         f"({', '.join(image.names)}): remove them by name, or use --force")
    return list(image.names)
