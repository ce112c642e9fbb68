"""``pybuild run -d``: a container that runs in the background.

The container is recorded and its snapshot prepared in the foreground (a taken name is
reported there), then a new Python process in a session of its own (``python -m
builder.detach ROOT ID``) runs it: it reads the image and the run options (pickled) on its
standard input, which is then ``/dev/null``, and writes its output to the container's log
(``containers/<id>.log``, what ``pybuild logs`` prints). It is a new process rather than a
fork so that it opens the store's databases afresh (sqlite must not be used across a fork).
The foreground waits until the container runs, or its start failed (its error then printed
from the log), and prints the full ID, as ``docker run -d`` does.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from builder.containerstore import ContainerStore, remove_container
from builder.errors import BuildError
from builder.localimages import LocalImage
from builder.store import BuildStore

if TYPE_CHECKING:
    from builder.containers import RunOptions

__all__ = ["START_TIMEOUT", "main", "run_detached"]

START_TIMEOUT = 60.0
"""Seconds the foreground waits for a detached container to start."""


def run_detached(store: BuildStore, image: LocalImage, options: RunOptions,
                 argv: tuple[str, ...], chain: str | None) -> int:
    """Create the container, start it in the background and print its ID; 0 once it runs,
    else the status its start ended with (its error printed from its log)."""
    from builder.containers import create_container

    container = create_container(store, image, options, argv, chain)
    containers = ContainerStore(store)
    log = containers.log_path(container)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "builder.detach", str(store.root), container.id],
            stdin=subprocess.PIPE, stdout=out, stderr=out, start_new_session=True)
    assert proc.stdin is not None
    with proc.stdin:
        proc.stdin.write(pickle.dumps((image, options)))
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        status = proc.poll()
        if containers.get(container.id).state != "created":
            print(container.id)
            return 0
        if status is not None:
            sys.stderr.write(log.read_text(errors="replace") if log.exists() else "")
            return status or 125
        if time.monotonic() > deadline:
            raise BuildError(f"container {container.name} did not start within "
                             f"{START_TIMEOUT:g} s; see 'pybuild logs {container.name}'")
        time.sleep(0.02)


def main(args: list[str]) -> int:
    """The background process: ``ROOT ID`` on the command line, the pickled image and run
    options on stdin; runs the container and returns its exit status."""
    from builder.containers import start_container

    root, container_id = args
    image, options = pickle.load(sys.stdin.buffer)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    status = 125
    try:
        with BuildStore.open(Path(root)) as store:
            containers = ContainerStore(store)
            try:
                status = start_container(store, containers.get(container_id), image, options)
            except BuildError as exc:
                print(f"error: {exc}", file=sys.stderr)
            if options.remove:
                remove_container(store, containers.get(container_id), force=False)
    except BaseException:  # the background has no one else to report to
        traceback.print_exc()
    sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
