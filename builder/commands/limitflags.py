"""The resource-limit flags of ``build`` and ``run`` (docker's), turned into
:class:`~builder.limits.Limits` over the builder config's ``[limits]`` defaults."""

from __future__ import annotations

import argparse

from builder import limits
from builder.config import BuilderConfig

__all__ = ["add_limit_flags", "limits_from"]


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--memory``, ``--memory-swap``, ``--cpus``, ``--cpu-shares``, ``--cpuset-cpus``,
    ``--pids-limit``, ``--shm-size`` and ``--ulimit`` (values are checked by
    :func:`limits_from`)."""
    group = parser.add_argument_group("resource limits (docker's flags; see docs/limits.md)")
    group.add_argument("-m", "--memory", dest="limit_memory", metavar="BYTES",
                       help="memory limit (such as 512m or 1g; at least 6m)")
    group.add_argument("--memory-swap", dest="limit_memory_swap", metavar="BYTES",
                       help="memory plus swap limit; -1: unlimited swap (default: twice "
                            "--memory)")
    group.add_argument("--cpus", dest="limit_cpus", metavar="N",
                       help="number of CPUs (such as 1.5)")
    group.add_argument("-c", "--cpu-shares", dest="limit_cpu_shares", metavar="SHARES",
                       help="CPU shares (relative weight; 1024 is the default weight)")
    group.add_argument("--cpuset-cpus", dest="limit_cpuset_cpus", metavar="LIST",
                       help="CPUs to run on (such as 0-3 or 0,2)")
    group.add_argument("--pids-limit", dest="limit_pids_limit", metavar="N",
                       help="most processes at once; -1: unlimited")
    group.add_argument("--shm-size", dest="limit_shm_size", metavar="BYTES",
                       help="size of /dev/shm (default 64m)")
    group.add_argument("--ulimit", dest="limit_ulimit", action="append", default=[],
                       metavar="NAME=SOFT[:HARD]",
                       help="a ulimit such as nofile=1024:2048 (repeatable)")


def limits_from(args: argparse.Namespace, settings: BuilderConfig | None = None
                ) -> limits.Limits:
    """The limits of the parsed flags over the ``[limits]`` table of ``settings``."""
    values = {name: getattr(args, f"limit_{name}", None) for name in limits.FIELDS}
    ulimits = getattr(args, "limit_ulimit", [])
    if settings is None:
        return limits.from_flags(values, ulimits)
    return limits.load(values, ulimits, settings.limits, settings.path)
