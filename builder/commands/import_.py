"""``pybuild import``: an image from a filesystem tar (see :mod:`builder.containerimage`)."""

from __future__ import annotations

import argparse
import sys

from builder.changes import ALLOWED
from builder.commands.common import check_name, familiar_name
from builder.containerimage import import_tar
from builder.errors import BuildError
from builder.store import BuildStore


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``import`` to the subcommands."""
    parser = sub.add_parser(
        "import", help="create an image from a filesystem tar",
        description="Store the filesystem tar FILE (or stdin for '-'; gzip, zstd, bzip2, xz "
                    "or plain) as the one layer of a new image whose config holds what the "
                    "-c changes set. Prints the new image ID.")
    parser.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION",
                        help=f"apply a Dockerfile instruction ({', '.join(ALLOWED)}) to the "
                             "config (repeatable)")
    parser.add_argument("-m", "--message", metavar="MESSAGE",
                        help="commit message (default: 'Imported from -')")
    parser.add_argument("file", metavar="file|-", help="the tar, or - for stdin")
    parser.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]",
                        help="name for the new image")
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Import and print ``sha256:<image ID>``."""
    name = familiar_name(check_name(args.reference)) if args.reference else None
    if "://" in args.file:
        raise BuildError(f"import {args.file}: importing from a URL is not supported; "
                         "download the tar and give its path or '-'")
    if args.file == "-":
        stored = import_tar(store, sys.stdin.buffer, changes=args.change,
                            message=args.message)
    else:
        try:
            source = open(args.file, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise BuildError(f"open {args.file}: {exc.strerror or exc}") from None
        with source:
            stored = import_tar(store, source, changes=args.change, message=args.message)
    if name is not None:
        store.images.put(name, stored.manifest)
    print(stored.config.digest)
    return 0
