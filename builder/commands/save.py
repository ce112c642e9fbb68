"""``pybuild save``: write images to a tar archive, as ``docker save`` or as an OCI layout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from builder.commands.common import find_image, find_name
from builder.errors import BuildError
from builder.exporters.archives import (
    Selected,
    destination,
    docker_images,
    write_docker_archive,
    write_oci_archive,
)
from builder.store import BuildStore
from layerstore.layout import REF_NAME, LayoutEntry


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``save`` to the subcommands."""
    parser = sub.add_parser(
        "save", help="save images to a tar archive",
        description="Write images to a tar archive: the docker-archive that 'docker load' "
                    "reads (with the names as RepoTags), or with --format oci an OCI image "
                    "layout ('oci-archive:' for skopeo and podman; each name is the "
                    f"{REF_NAME} annotation). Images given by ID are written without a name.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="name or ID")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="write to FILE instead of stdout (which must not be a terminal)")
    parser.add_argument("--format", choices=("docker", "oci"), default="docker",
                        help="archive format (default: docker)")
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Write the archive; nothing is left at ``-o FILE`` when it fails."""
    if args.output is None and sys.stdout.isatty():
        raise BuildError("refusing to write an image archive to a terminal: use -o FILE or "
                         "redirect the output")
    selected = [select(store, ref) for ref in args.images]
    with destination(args.output) as out:
        if args.format == "oci":
            write_oci_archive(out, store.content, [
                LayoutEntry(s.name, s.image.target) for s in selected])
        else:
            write_docker_archive(out, store.content, docker_images(selected))
    return 0


def select(store: BuildStore, ref: str) -> Selected:
    """The image ``ref`` names, with the stored name when it is a name."""
    record = find_name(store, ref)
    return Selected(find_image(store, ref), record.name if record is not None else None)
