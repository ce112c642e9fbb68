"""``pybuild push``: upload a local image to the registry its name points at."""

from __future__ import annotations

import argparse
import sys

from builder.commands.common import find_image
from builder.commands.registryflags import add_registry_flags, settings_from
from builder.progress import Progress
from builder.store import BuildStore
from builder.transfer import push_image


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``push``."""
    p = sub.add_parser("push", help="push an image to a registry",
                       description="Upload NAME (blobs the registry has are skipped) to the "
                       "registry and repository the name points at, as docker push does.")
    p.add_argument("name", metavar="NAME[:TAG]")
    p.add_argument("--progress", choices=("auto", "plain", "tty", "quiet"), default="auto")
    add_registry_flags(p)
    p.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Push and print the digest."""
    image = find_image(store, args.name)
    settings = settings_from(args)
    with Progress(args.progress) as progress:
        vertex = progress.vertex(f"pushing {args.name}")
        digest = push_image(store, image.target, args.name, settings, vertex)
        vertex.done()
    print(f"{args.name}: digest: {digest}")
    return 0
