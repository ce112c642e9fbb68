"""``pybuild ps``: list containers (see :mod:`builder.containerstore`)."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import Any

from builder.commands.common import (
    created_at,
    created_since,
    ellipsis,
    human_duration,
    parse_created,
    print_rows,
)
from builder.containerstore import Container, ContainerStore
from builder.store import BuildStore

COLUMNS = (("CONTAINER ID", "ID"), ("IMAGE", "Image"), ("COMMAND", "Command"),
           ("CREATED", "RunningFor"), ("STATUS", "Status"), ("PORTS", "Ports"),
           ("NAMES", "Names"))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ps`` to the subcommands."""
    parser = sub.add_parser(
        "ps", help="list containers",
        description="List the running containers (with -a, every container), newest "
                    "first, in docker's columns. A container runs while the 'pybuild run' "
                    "that made it runs.")
    parser.add_argument("-a", "--all", action="store_true",
                        help="show all containers (default: only running ones)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="only show container IDs")
    parser.add_argument("-l", "--latest", action="store_true",
                        help="show only the latest created container (any state)")
    parser.add_argument("-n", "--last", type=int, default=-1, metavar="N",
                        help="show the N last created containers (any state)")
    parser.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    parser.add_argument("--format", metavar="FORMAT",
                        help="'json' (one object a line) or a template such as "
                             "'{{.Names}} {{.Status}}'")
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Print the container table (or IDs, or one formatted line per container)."""
    containers = ContainerStore(store).list()
    last = 1 if args.latest else args.last
    if last >= 0:
        containers = containers[:last]
    elif not args.all:
        containers = [c for c in containers if c.status == "running"]
    rows = [row(c, args.no_trunc) for c in containers]
    print_rows(rows, COLUMNS, quiet=args.quiet, fmt=args.format)
    return 0


def command_text(container: Container) -> str:
    """The command as docker's ps shows it: arguments quoted for a shell where needed."""
    return " ".join(shlex.quote(a) if a else "''" for a in container.command)


def status_text(container: Container, now: float | None = None) -> str:
    """``Up 5 seconds``, ``Exited (0) 3 minutes ago`` or ``Created``."""
    now = time.time() if now is None else now
    status = container.status
    if status == "running":
        started = parse_created(container.started_at)
        return f"Up {human_duration(now - started.timestamp()) if started else ''}".rstrip()
    if status == "exited":
        finished = parse_created(container.finished_at)
        ago = f" {human_duration(now - finished.timestamp())} ago" if finished else ""
        return f"Exited ({container.exit_status}){ago}"
    return "Created"


def row(container: Container, no_trunc: bool) -> dict[str, Any]:
    """One container as ``ps`` shows it (keys as docker's ``--format`` fields)."""
    command = command_text(container)
    if not no_trunc:
        command = ellipsis(command, 20)
    quoted = '"' + command.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return {
        "ID": container.id if no_trunc else container.short_id,
        "Image": container.image, "Command": quoted,
        "CreatedAt": created_at(container.created),
        "RunningFor": created_since(container.created),
        "Status": status_text(container), "State": container.status, "Ports": "",
        "Names": container.name,
    }
