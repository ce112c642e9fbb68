"""``pybuild load``: store the images of a tar archive (see :mod:`builder.importers`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from builder.errors import BuildError
from builder.importers import load_archive, plain_tar
from builder.localimages import IMAGE_NAME_ANNOTATION
from builder.store import BuildStore
from layerstore.layout import REF_NAME


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``load`` to the subcommands."""
    parser = sub.add_parser(
        "load", help="load images from a tar archive",
        description="Store the images of a tar archive: a docker-archive (what 'docker "
                    "save' writes; its RepoTags become names) or an OCI image layout (names "
                    f"from the {IMAGE_NAME_ANNOTATION} or {REF_NAME} annotations). The "
                    "archive may be compressed with gzip, zstd, bzip2 or xz. An image without "
                    "a name is reported by ID and stays unnamed until 'pybuild prune -a' "
                    "removes it.")
    parser.add_argument("-i", "--input", type=Path, metavar="FILE",
                        help="read from FILE instead of stdin")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="accepted for docker compatibility (no progress is printed)")
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Load the archive and print ``Loaded image: NAME`` (or ``Loaded image ID: ID``)."""
    if args.input is None and sys.stdin.isatty():
        raise BuildError("requested load from stdin, but stdin is a terminal: use -i FILE "
                         "or redirect the input")
    with plain_tar(args.input, store, sys.stdin.buffer) as path:
        loaded = load_archive(path, store, str(args.input or "stdin"))
    for item in loaded:
        for name in item.names:
            print(f"Loaded image: {name}")
        if not item.names:
            print(f"Loaded image ID: {item.image_id}")
    return 0
