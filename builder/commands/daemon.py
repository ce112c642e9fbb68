"""``pybuild daemon start|stop|status``: the resident process of :mod:`builder.daemon`.

:func:`builder.cli.main` runs this command through :func:`main` before any store is opened.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from builder.daemon import run_action
from builder.store import BuildStore

DESCRIPTION = ("A resident process that runs pybuild commands with its modules loaded (as "
               "buildkitd does for buildctl). build, push, pull and the image commands use "
               "it while it runs; PYBUILD_NO_DAEMON=1 runs them in their own process.")


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("start", "stop", "status", "serve"),
                        help="start in the background, stop, say whether it runs (exit "
                             "status 3 if not), or serve in the foreground")
    parser.add_argument("--dir", type=Path, default=None,
                        help="socket directory (default: $PYBUILD_DAEMON_DIR, /run/pybuild "
                             "for root, $XDG_RUNTIME_DIR/pybuild or /tmp/pybuild-UID for "
                             "other users)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``daemon``."""
    parser = sub.add_parser("daemon", help="start or stop the resident pybuild process",
                            description=DESCRIPTION)
    _arguments(parser)
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Carry out the action (the store is not used)."""
    return run_action(args.action, args.dir)


def main(argv: list[str]) -> int:
    """``pybuild daemon ARGS``, parsed and run without opening a store."""
    parser = argparse.ArgumentParser(prog="pybuild daemon", description=DESCRIPTION)
    _arguments(parser)
    args = parser.parse_args(argv)
    return run_action(args.action, args.dir)
