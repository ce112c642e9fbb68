"""``pybuild rm``: remove containers (see :mod:`builder.containerstore`)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time

from builder.commands.common import print_error
from builder.containerstore import Container, ContainerStore, process_alive
from builder.errors import BuildError
from builder.store import BuildStore
from layerstore.errors import FailedPrecondition, NotFound

STOP_TIMEOUT = 10.0
"""Seconds ``rm -f`` waits for a killed container's run to end."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rm`` to the subcommands."""
    parser = sub.add_parser(
        "rm", help="remove containers",
        description="Remove containers and their files. A running container (its 'pybuild "
                    "run' is still going) is refused unless -f kills it first (SIGKILL).")
    parser.add_argument("-f", "--force", action="store_true",
                        help="kill a running container before removing it")
    parser.add_argument("-v", "--volumes", action="store_true",
                        help="accepted for docker compatibility (containers have no volumes)")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER", help="name or ID")
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Remove each container, printing its name as given; 1 when any could not be."""
    containers = ContainerStore(store)
    status = 0
    for ref in args.containers:
        try:
            remove(store, containers, containers.get(ref), force=args.force)
        except BuildError as exc:
            print_error(exc)
            status = 1
            continue
        print(ref)
    return status


def remove(store: BuildStore, containers: ContainerStore, container: Container, *,
           force: bool) -> None:
    """Remove ``container``: kill its run first with ``force``, else refuse a running one."""
    if container.running:
        if not force:
            raise BuildError(f'cannot remove container "/{container.name}": container is '
                             "running: stop the container before removing or force remove")
        _kill(container)
    try:
        store.snapshots.remove(container.snapshot)
    except NotFound:
        pass
    except FailedPrecondition as exc:
        raise BuildError(f"cannot remove container {container.name}: {exc}") from None
    containers.delete(container)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        ppid = int(raw[raw.rfind(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill(container: Container) -> None:
    """SIGKILL the container's processes, then wait for its run to record the end (its run
    process is killed too when it does not end in time)."""
    for pid in _descendants(container.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + STOP_TIMEOUT
    while process_alive(container.pid, container.pid_start):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(container.pid, signal.SIGKILL)
            time.sleep(0.5)
            break
        time.sleep(0.05)
