"""The ``pybuild`` command: ``pybuild [build] [OPTIONS] CONTEXT`` and the image commands.

As with ``docker build``, the first argument may be build options directly
(``pybuild -t app:v1 .``): anything that is not a known subcommand means ``build``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

NO_STORE = ("login", "logout")
"""Commands that neither mount nor write the store: a rootless user runs them as itself."""

COMMANDS = ("build", "images", "inspect", "history", "tag", "rmi", "save", "load", "prune",
            "run", "login", "logout", "pull", "push", "daemon",
            "ps", "rm", "commit", "export", "import", "cp", "logs")

MODULES = {"import": "import_"}
"""Subcommands whose module is named otherwise (``import`` is a Python keyword)."""


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line parser; with ``only``, just that subcommand is registered (its
    module alone is imported, which keeps start-up short)."""
    import argparse
    import importlib

    parser = argparse.ArgumentParser(
        prog="pybuild", description="Build container images from Dockerfiles; manage them.")
    parser.add_argument("--root", type=Path,
                        help="store directory ($PYBUILD_ROOT, default /var/lib/pybuild for root, "
                             "$XDG_DATA_HOME/pybuild for other users)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in (only,) if only in COMMANDS else COMMANDS:
        try:
            module_name = f"builder.commands.{MODULES.get(name, name)}"
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(sub)
    return parser


def _with_default_command(argv: list[str]) -> list[str]:
    """Insert ``build`` when the first non-global argument is not a subcommand."""
    i = 0
    while i < len(argv) and (argv[i] == "--root" or argv[i].startswith("--root=")):
        i += 2 if argv[i] == "--root" else 1
    if i < len(argv) and argv[i] not in COMMANDS and argv[i] not in ("-h", "--help"):
        return [*argv[:i], "build", *argv[i:]]
    return argv


def _command_of(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names (after the global options), or None."""
    i = 0
    while i < len(argv) and (argv[i] == "--root" or argv[i].startswith("--root=")):
        i += 2 if argv[i] == "--root" else 1
    return argv[i] if i < len(argv) and argv[i] in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pybuild``: a command runs in the daemon when one serves it (see
    :mod:`builder.daemonclient`), else here."""
    words = _with_default_command(list(sys.argv[1:] if argv is None else argv))
    if words[:1] == ["daemon"]:
        from builder.commands.daemon import main as daemon_main

        return daemon_main(words[1:])
    from builder.daemonclient import run_in_daemon

    status = run_in_daemon(words)
    return run_command(words) if status is None else status


def run_command(words: list[str]) -> int:
    """Parse ``words`` (a subcommand first) and run the command in this process."""
    from builder.errors import BuildError
    from builder.store import BuildStore
    from layerstore.errors import LayerstoreError

    args = _parser(_command_of(words)).parse_args(words)
    try:
        if args.command not in NO_STORE:
            _enter_user_namespace()
        with BuildStore.open(args.root) as store:
            status = int(args.command_module.run(args, store))
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except KeyboardInterrupt:
        print("pybuild: interrupted", file=sys.stderr)
        return 130
    except (BuildError, LayerstoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _enter_user_namespace() -> None:
    """As a user other than root, become root of a user namespace of one's own first
    (:mod:`builder.rootless`)."""
    from builder import rootless

    if rootless.needed():
        rootless.enter()


def _silence_stdout() -> None:
    """After the reader of stdout went away (``pybuild images | head -1``), end quietly.

    Whatever is still buffered cannot be delivered; pointing stdout at /dev/null keeps the
    interpreter's final flush from printing a second BrokenPipeError. The exit status is
    the shell's for a process ended by SIGPIPE (128 + 13), as docker's is.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
