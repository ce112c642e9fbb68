"""``pybuild prune``: free the space that no named image needs (see :mod:`builder.gc`)."""

from __future__ import annotations

import argparse
import sys

from builder.commands.common import human_size
from builder.errors import BuildError
from builder.gc import prune
from builder.store import BuildStore


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``prune`` to the subcommands."""
    parser = sub.add_parser(
        "prune", help="remove what no named image needs",
        description="Remove unpacked layers (snapshots) that no named image uses, "
                    "snapshots left behind by interrupted builds and runs (active-, view-, "
                    "unpack- keys that are not mounted) and abandoned blob downloads. The build "
                    "cache keeps what its steps made (--keep-storage shrinks it). Content "
                    "blobs stay, so any image can be unpacked again. With --all, also empty "
                    "the build cache and remove every blob (layer, config, manifest) that no "
                    "named image reaches. Anything created or changed "
                    "in the last --grace seconds stays; give a grace period when builds may "
                    "be running at the same time.")
    parser.add_argument("-a", "--all", action="store_true",
                        help="also empty the build cache and remove blobs that no named image "
                        "reaches")
    parser.add_argument("--keep-storage", metavar="SIZE", type=parse_size,
                        help="shrink the build cache to SIZE (e.g. 5GB), least recently used "
                        "steps first")
    parser.add_argument("-f", "--force", action="store_true",
                        help="do not ask for confirmation")
    parser.add_argument("--grace", type=float, default=0.0, metavar="SECONDS",
                        help="keep anything younger than this (default 0)")
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Ask (unless --force), prune, and print what went and the space reclaimed."""
    if args.grace < 0:
        raise BuildError(f"--grace must be 0 or more seconds, got {args.grace:g}")
    if not args.force and not _confirmed(args.all):
        return 0
    outcome = prune(store, everything=args.all, keep_storage=args.keep_storage,
                    grace=args.grace)
    for item in outcome.removed:
        print(f"Deleted {item.kind}: {item.name}")
    print(f"Total reclaimed space: {human_size(outcome.reclaimed)}")
    return 0


def _confirmed(blobs: bool) -> bool:
    what = ("all unpacked layers no named image uses, leftovers of interrupted builds, and "
            "every blob no named image reaches" if blobs else
            "all unpacked layers no named image uses and leftovers of interrupted builds")
    print(f"WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ",
          end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
          "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4, "K": 1024,
          "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """``5GB``, ``512MiB``, ``100m``, ``1024`` → bytes."""
    number = text.strip().upper().rstrip("S")
    unit = number.lstrip("0123456789.")
    value = number[: len(number) - len(unit)]
    if not value or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (try 5GB or 512MiB)")
    return int(float(value) * _UNITS[unit])
