"""``pybuild cp``: copy files between a container and the host (see
:mod:`builder.containerfs`)."""

from __future__ import annotations

import argparse
import sys

from builder.containerfs import copy_from_container, copy_into_container
from builder.containerstore import ContainerStore
from builder.errors import BuildError
from builder.store import BuildStore


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cp`` to the subcommands."""
    parser = sub.add_parser(
        "cp", help="copy files between a container and the host",
        description="Copy CONTAINER:SRC_PATH to DEST_PATH, or SRC_PATH to CONTAINER:DEST_PATH, "
                    "as docker cp does: '-' as DEST_PATH writes a tar to stdout, '-' as "
                    "SRC_PATH extracts a tar from stdin into a directory; a source directory "
                    "ending in '/.' copies only its contents. Owners, modes, times, xattrs and "
                    "symlinks are kept; container paths are resolved inside the container.")
    parser.add_argument("-a", "--archive", action="store_true",
                        help="accepted for docker compatibility (owners are always kept)")
    parser.add_argument("-L", "--follow-link", action="store_true",
                        help="follow a symlink given as SRC_PATH")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="accepted for docker compatibility (no progress is printed)")
    parser.add_argument("source", metavar="SRC")
    parser.add_argument("dest", metavar="DEST")
    parser.set_defaults(command_module=sys.modules[__name__])


def split_container_path(arg: str) -> tuple[str | None, str]:
    """``(container, path)`` of ``CONTAINER:PATH``; ``(None, arg)`` for a local path (one
    starting with ``/`` or ``.``, or without ``:``)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    container, _, path = arg.partition(":")
    return container, path


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Copy in or out."""
    src_container, src = split_container_path(args.source)
    dest_container, dest = split_container_path(args.dest)
    if src_container is not None and dest_container is not None:
        raise BuildError("copying between containers is not supported")
    if src_container is None and dest_container is None:
        raise BuildError("must specify at least one container source")
    containers = ContainerStore(store)
    if src_container is not None:
        container = containers.get(src_container)
        copy_from_container(store, container, src or "/", dest, follow=args.follow_link,
                            stdout=sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        assert dest_container is not None
        container = containers.get(dest_container)
        copy_into_container(store, container, src, dest or "/", follow=args.follow_link,
                            stdin=sys.stdin.buffer)
    return 0
