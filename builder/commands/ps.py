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
from builder.errors import BuildError
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
    parser.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="only containers that match: name=PART, id=PREFIX, "
                             "status=created|running|exited, ancestor=IMAGE, exited=CODE "
                             "(repeatable; the same key twice means either)")
    parser.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    parser.add_argument("--format", metavar="FORMAT",
                        help="'json' (one object a line) or a template such as "
                             "'{{.Names}} {{.Status}}'")
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Print the container table (or IDs, or one formatted line per container)."""
    containers = ContainerStore(store).list()
    filters = parse_filters(args.filter)
    last = 1 if args.latest else args.last
    if last >= 0:
        containers = containers[:last]
    elif not args.all and "status" not in filters and "exited" not in filters:
        containers = [c for c in containers if c.status == "running"]
    containers = [c for c in containers if matches(c, filters)]
    rows = [row(c, args.no_trunc) for c in containers]
    print_rows(rows, COLUMNS, quiet=args.quiet, fmt=args.format)
    return 0


FILTER_KEYS = ("name", "id", "status", "ancestor", "exited")
STATUSES = ("created", "running", "exited")


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    """``KEY=VALUE`` filters by key; BuildError for an unknown key or status."""
    filters: dict[str, list[str]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or key not in FILTER_KEYS:
            raise BuildError(f"--filter {item!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(FILTER_KEYS)}")
        if key == "status" and value not in STATUSES:
            raise BuildError(f"--filter {item!r}: invalid filter 'status={value}' (one of "
                             f"{', '.join(STATUSES)})")
        if key == "exited" and not value.lstrip("-").isdigit():
            raise BuildError(f"--filter {item!r}: the exit code must be a number")
        filters.setdefault(key, []).append(value)
    return filters


def matches(container: Container, filters: dict[str, list[str]]) -> bool:
    """Whether ``container`` passes every filter key (any of a key's values)."""
    tests = {
        "name": lambda v: v in container.name,
        "id": lambda v: container.id.startswith(v),
        "status": lambda v: container.status == v,
        "ancestor": lambda v: v in (container.image, container.image_id,
                                    container.image_id.removeprefix("sha256:")[:len(v)]),
        "exited": lambda v: container.status == "exited" and container.exit_status == int(v),
    }
    return all(any(tests[key](v) for v in values) for key, values in filters.items())


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
