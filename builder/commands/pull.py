"""``pybuild pull``: download an image from a registry into the local store."""

from __future__ import annotations

import argparse
import sys

from builder.api import host_platform
from builder.commands.registryflags import add_registry_flags, settings_from
from builder.errors import BuildError
from builder.frontend.convert import parse_platform
from builder.progress import Progress
from builder.store import BuildStore
from builder.transfer import PullingImages


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``pull``."""
    p = sub.add_parser("pull", help="pull an image from a registry",
                       description="Download NAME (docker's reference syntax: debian, "
                       "debian:bookworm, host:port/ns/repo:tag, name@sha256:...) for the "
                       "platform and store it under its short name.")
    p.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    p.add_argument("--platform", help="os/arch (default: this machine's)")
    p.add_argument("--progress", choices=("auto", "plain", "tty", "quiet"), default="auto")
    add_registry_flags(p)
    p.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Pull and print the manifest digest."""
    try:
        platform = parse_platform(args.platform) if args.platform else host_platform()
    except ValueError as exc:
        raise BuildError(f"--platform: {exc}") from None
    with Progress(args.progress) as progress:
        images = PullingImages(store, settings_from(args), progress.vertex, always=True)
        image = images.resolve(args.name, platform)
    print(f"{args.name}: digest: {image.manifest.digest}")
    return 0
