"""``pybuild`` subcommands: each module has ``register(subparsers)`` and ``run(args, store)``.

``register`` adds the command's parser (with ``set_defaults(command_module=<module>)``);
``run`` does the work against an open :class:`~builder.store.BuildStore` and returns the exit
status. Errors are raised as :class:`~builder.errors.BuildError` (or layerstore errors) and
printed by :mod:`builder.cli` as one line.
"""

from __future__ import annotations

import argparse
from typing import Protocol

from builder.store import BuildStore


class Command(Protocol):
    """What every module in this package provides."""

    def register(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        """Add the command's parser to ``sub``."""
        ...

    def run(self, args: argparse.Namespace, store: BuildStore) -> int:
        """Carry out the command; return the exit status."""
        ...
