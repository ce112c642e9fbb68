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
from layerstore.oci import Platform


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pull``."""
    p = sub.add_parser("pull", help="pull an image from a registry",
                       description="Download NAME (docker's reference syntax: debian, "
                       "debian:bookworm, host:port/ns/repo:tag, name@sha256:...) for the "
                       "platform and store it under its short name.")
    p.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    p.add_argument("--platform", help="os/arch (default: this machine's)")
    p.add_argument("--all-platforms", action="store_true",
                   help="store every image of a multi-platform index (and every attestation "
                   "manifest), so that the whole index can be pushed elsewhere")
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
        if args.all_platforms:
            digest = _pull_all(store, args, platform, progress)
        else:
            images = PullingImages(store, settings_from(args), progress.vertex, always=True)
            digest = str(images.resolve(args.name, platform).manifest.digest)
    print(f"{args.name}: digest: {digest}")
    return 0


def _pull_all(store: BuildStore, args: argparse.Namespace, platform: Platform,
              progress: Progress) -> str:
    """``--all-platforms``: pull the whole index and name it; the digest of what the name
    resolved to."""
    from builder.transfer import local_name, reporter
    from registry.client.errors import ClientError
    from registry.client.pull import pull
    from registry.client.reference import parse_reference

    vertex = progress.vertex(f"[internal] pull {args.name} (all platforms)")
    try:
        reference = parse_reference(args.name)
        pulled = pull(reference, store.content, platform, settings_from(args),
                      progress=reporter(vertex), all_platforms=True)
    except ClientError as exc:
        vertex.error(str(exc))
        raise BuildError(str(exc)) from None
    name = local_name(reference)
    if name is not None:
        store.images.put(name, pulled.target)
    vertex.done()
    return str(pulled.target.digest)
