"""``pybuild history``: the history entries of an image, newest first, like docker's."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from builder.commands.common import (
    LocalImage,
    created_at,
    created_since,
    ellipsis,
    find_image,
    human_size,
    print_rows,
)
from builder.store import BuildStore
from layerstore.oci import History

CREATED_BY_WIDTH = 45


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``history`` to the subcommands."""
    parser = sub.add_parser(
        "history", help="show the history of an image",
        description="Show the history of an image, newest first. SIZE is the compressed size "
                    "of the layer an entry made (0B for entries that made none); only the "
                    "newest entry has an image ID, the others show <missing> as docker does.")
    parser.add_argument("image", metavar="IMAGE", help="name or ID")
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate the output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    parser.add_argument("--format", metavar="FORMAT",
                        help="'json' (one object a line) or a template such as "
                             "'{{.CreatedBy}}'")
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Print the history table of one image."""
    rows = history_rows(find_image(store, args.image), no_trunc=args.no_trunc)
    print_rows(rows, [("IMAGE", "ID"), ("CREATED", "CreatedSince"), ("CREATED BY", "CreatedBy"),
                      ("SIZE", "Size"), ("COMMENT", "Comment")],
               quiet=args.quiet, fmt=args.format)
    return 0


def history_rows(image: LocalImage, *, no_trunc: bool = False) -> list[dict[str, Any]]:
    """One row per history entry, newest first; an image without history gets one row per
    layer."""
    entries = list(image.stored.image.history or ())
    if not entries:
        entries = [History() for _ in image.layers]
    sizes = [layer.size for layer in image.layers]
    rows = []
    layer = 0
    for entry in entries:
        size = 0
        if not entry.empty_layer:
            size = sizes[layer] if layer < len(sizes) else 0
            layer += 1
        created_by = entry.created_by or ""
        rows.append({
            "ID": "<missing>",
            "CreatedAt": created_at(entry.created),
            "CreatedSince": created_since(entry.created),
            "CreatedBy": created_by if no_trunc else ellipsis(created_by, CREATED_BY_WIDTH),
            "Size": human_size(size),
            "Comment": entry.comment or "",
        })
    rows.reverse()
    if rows:
        rows[0]["ID"] = image.id if no_trunc else image.short_id
    return rows
