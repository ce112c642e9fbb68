"""``pybuild inspect``: images as a JSON array shaped like ``docker image inspect``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from builder.commands.common import LocalImage, find_image, format_each, print_error
from builder.errors import BuildError
from builder.store import BuildStore
from layerstore.errors import LayerstoreError
from layerstore.oci import ImageConfig

#: The Dockerfile-visible config fields, always shown (``null`` when unset).
CONFIG_FIELDS = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir",
                 "Labels", "StopSignal", "Healthcheck", "OnBuild", "Shell")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``inspect`` to the subcommands."""
    parser = sub.add_parser(
        "inspect", help="show the details of images",
        description="Print images (by name or ID) as a JSON array like docker image inspect. "
                    "Size counts compressed layers and the config; Manifest is the manifest "
                    "digest, Index the index digest for a multi-platform image and Platforms the "
                    "platforms it holds (the rest describes this machine's platform).")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="name or ID")
    parser.add_argument("-f", "--format", metavar="FORMAT",
                        help="'json' (one compact object a line) or a template such as "
                             "'{{.Id}}' or '{{json .Config.Env}}'")
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Print the found images; an unknown one is an error line (the others still print)."""
    found: list[dict[str, Any]] = []
    status = 0
    for ref in args.images:
        try:
            found.append(describe(find_image(store, ref), store))
        except (BuildError, LayerstoreError) as exc:
            print_error(exc)
            status = 1
    if args.format:
        for line in format_each(args.format, found):
            print(line)
    elif found or status == 0:
        print(json.dumps(found, indent=4))
    return status


def describe(image: LocalImage, store: BuildStore | None = None) -> dict[str, Any]:
    """The inspect document of one image (with ``store``, a multi-platform image's
    ``Platforms`` too)."""
    config = image.stored.image
    out: dict[str, Any] = {
        "Id": image.id,
        "RepoTags": list(image.names),
        "RepoDigests": [],
        "Parent": "",
        "Comment": _last_comment(image),
        "Created": config.created or "",
        "Author": config.author or "",
        "Config": config_fields(config.config),
        "Architecture": config.architecture,
    }
    if config.variant:
        out["Variant"] = config.variant
    out.update({
        "Os": config.os,
        "Size": image.size,
        "RootFS": {"Type": config.rootfs.type,
                   "Layers": [str(d) for d in config.rootfs.diff_ids]},
        "Manifest": str(image.stored.manifest.digest),
    })
    if image.target.digest != image.stored.manifest.digest:
        out["Index"] = str(image.target.digest)
        if store is not None:
            from builder.platforms_images import image_platforms

            out["Platforms"] = image_platforms(store, image)
    return out


def config_fields(config: ImageConfig | None) -> dict[str, Any]:
    """The image config as docker shows it: every Dockerfile-visible field, plus any other
    field the config carries."""
    doc = config.to_dict() if config is not None else {}
    out: dict[str, Any] = {name: doc.pop(name, None) for name in CONFIG_FIELDS}
    out["User"] = out["User"] or ""
    out["WorkingDir"] = out["WorkingDir"] or ""
    out.update(doc)
    return out


def _last_comment(image: LocalImage) -> str:
    own = image.stored.image.extra.get("comment")
    if isinstance(own, str) and own:
        return own
    history = image.stored.image.history or ()
    return next((h.comment for h in reversed(history) if h.comment), "")
