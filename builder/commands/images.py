"""``pybuild images``: list the named local images."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from builder.commands.common import (
    LocalImage,
    all_images,
    check_name,
    created_at,
    created_since,
    human_size,
    parse_created,
    print_rows,
)
from builder.store import BuildStore
from layerstore.images import split_name


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``images`` to the subcommands."""
    parser = sub.add_parser(
        "images", help="list images",
        description="List the named local images, newest first: one row per name. SIZE is "
                    "what the image takes in the store (compressed layers and config); IMAGE "
                    "ID is the config digest of this machine's platform in a multi-platform "
                    "image.")
    parser.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]",
                        help="only images of this repository (and tag)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    parser.add_argument("--digests", action="store_true",
                        help="show the manifest digest of each image")
    parser.add_argument("--no-trunc", action="store_true", help="show full image IDs")
    parser.add_argument("--platforms", action="store_true",
                        help="show the platforms of each image (those of a multi-platform "
                             "index; also the {{.Platforms}} field of --format)")
    parser.add_argument("--format", metavar="FORMAT",
                        help="'json' (one object a line) or a template such as "
                             "'{{.Repository}}:{{.Tag}}'")
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Print the image table (or IDs, or one formatted line per image)."""
    from builder.platforms_images import image_platforms

    images = all_images(store)
    platforms = {str(i.target.digest): ",".join(image_platforms(store, i)) for i in images}
    rows = _rows(images, args.reference, args.no_trunc)
    for row in rows:
        row["Platforms"] = platforms[row["Digest"]]
    digest = [("DIGEST", "Digest")] if args.digests else []
    shown = [("PLATFORMS", "Platforms")] if args.platforms else []
    print_rows(rows, [("REPOSITORY", "Repository"), ("TAG", "Tag"), *digest,
                      ("IMAGE ID", "ID"), *shown, ("CREATED", "CreatedSince"),
                      ("SIZE", "Size")],
               quiet=args.quiet, fmt=args.format)
    return 0


def _rows(images: list[LocalImage], reference: str | None, no_trunc: bool
          ) -> list[dict[str, Any]]:
    """One row per name, newest image first, then by name."""
    want_repo, want_tag = _filter(reference)
    keyed = []
    for image in images:
        created = image.stored.image.created
        moment = parse_created(created)
        for name in image.names:
            repo, tag = split_name(name)
            if (want_repo is not None and repo != want_repo) or (
                    want_tag is not None and tag != want_tag):
                continue
            row = {
                "Repository": repo, "Tag": tag,
                "ID": image.id if no_trunc else image.short_id,
                "Digest": str(image.target.digest),
                "CreatedAt": created_at(created), "CreatedSince": created_since(created),
                "Size": human_size(image.size),
            }
            keyed.append(((-(moment.timestamp() if moment else 0.0), repo, tag), row))
    return [row for _, row in sorted(keyed, key=lambda item: item[0])]


def _filter(reference: str | None) -> tuple[str | None, str | None]:
    if reference is None:
        return None, None
    repo, tag = split_name(check_name(reference))
    return repo, (tag if ":" in reference.rpartition("/")[2] else None)
