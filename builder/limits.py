"""Resource limits of RUN steps and ``pybuild run``: docker's flags, their values and checks.

The flags are docker's: ``--memory``/``-m``, ``--memory-swap``, ``--cpus``,
``--cpu-shares``/``-c``, ``--cpuset-cpus``, ``--pids-limit``, ``--shm-size`` and ``--ulimit``
(``name=soft[:hard]``, repeatable), with docker's value syntax (sizes such as ``512m`` or
``1.5g``, binary multiples; ``--memory-swap -1`` for unlimited swap) and docker's checks
(at least 6 MiB of memory, swap no smaller than memory, no more CPUs than the host has).

Build-wide defaults come from the ``[limits]`` table of the builder config file
(:mod:`builder.config`), whose keys are the flag names without dashes (``memory``,
``memory-swap``, ``cpus``, ``cpu-shares``, ``cpuset-cpus``, ``pids-limit``, ``shm-size`` and
``ulimit``, a list of ``name=soft[:hard]`` strings); a flag given on the command line wins.

The limits themselves are applied by the executor (:mod:`builder.executor.cgroups`).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from builder.errors import BuildError

#: Docker's smallest memory limit.
MIN_MEMORY = 6 * 1024 * 1024
#: The /dev/shm size when none is asked (docker's).
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
#: The CFS period the CPU quota of ``--cpus`` is a share of, in microseconds.
CPU_PERIOD = 100_000
MIN_CPU_SHARES, MAX_CPU_SHARES = 2, 262_144
#: ``--ulimit`` names and their RLIMIT_* numbers (Linux, every architecture).
ULIMITS = {"cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6,
           "nofile": 7, "memlock": 8, "as": 9, "locks": 10, "sigpending": 11,
           "msgqueue": 12, "nice": 13, "rtprio": 14, "rttime": 15}
UNLIMITED = -1

_SIZE = re.compile(r"^(\d+(?:\.\d+)?) ?([kmgtp])?i?b?$", re.IGNORECASE)
_UNITS = {None: 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_CPU_LIST = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


@dataclass(frozen=True)
class Ulimit:
    """One ``--ulimit``: an RLIMIT by docker's name, soft and hard values (-1: unlimited)."""

    name: str
    soft: int
    hard: int

    @property
    def resource(self) -> int:
        """The RLIMIT_* number."""
        return ULIMITS[self.name]

    def __str__(self) -> str:
        return f"{self.name}={self.soft}:{self.hard}"


@dataclass(frozen=True)
class Limits:
    """The resource limits of one run; None (or no ulimits) means not limited.

    ``memory_swap`` is memory plus swap as docker counts it (-1: unlimited swap); ``cpus``
    is in billionths of a CPU (docker's NanoCPUs). ``config`` names the config file the
    names in ``from_config`` were taken from, so an error can say where a limit was set."""

    memory: int | None = None
    memory_swap: int | None = None
    cpus: int | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    pids_limit: int | None = None
    shm_size: int | None = None
    ulimits: tuple[Ulimit, ...] = ()
    config: str | None = None
    from_config: frozenset[str] = frozenset()

    @property
    def controllers(self) -> tuple[str, ...]:
        """The cgroup controllers these limits need (none: no cgroup is made)."""
        wanted = (("memory", self.memory is not None),
                  ("cpu", self.cpus is not None or self.cpu_shares is not None),
                  ("cpuset", self.cpuset_cpus is not None),
                  ("pids", self.pids_limit is not None))
        return tuple(name for name, on in wanted if on)

    @property
    def swap_total(self) -> int | None:
        """The memory + swap limit to apply: docker's default is twice ``memory``."""
        if self.memory is None:
            return None
        if self.memory_swap is None:
            return 2 * self.memory
        return self.memory_swap

    def flag(self, name: str) -> str:
        """How the user set limit ``name`` (a field name), for messages: ``--memory 64m``,
        or ``memory = "64m" in [limits] of FILE`` when it came from the config file."""
        value = getattr(self, name)
        key = name.replace("_", "-")
        if name in ("memory", "memory_swap", "shm_size"):
            text = format_size(value)
        elif name == "cpus":
            text = f"{value / 1e9:g}"
        else:
            text = str(value)
        if name in self.from_config:
            return f"{key} = {text!r} in [limits] of {self.config}"
        return f"--{key} {text}"


def format_size(value: int) -> str:
    """``value`` bytes the way the flags take it: ``64m``, ``1g``, ``1536k``; -1 as is."""
    if value <= 0:
        return str(value)
    for unit, power in (("g", 3), ("m", 2), ("k", 1)):
        if value % 1024 ** power == 0:
            return f"{value // 1024 ** power}{unit}"
    return str(value)


def human_size(value: int) -> str:
    """``value`` bytes in binary units for messages: ``64MiB``, ``1.5GiB``."""
    for unit, power in (("GiB", 3), ("MiB", 2), ("KiB", 1)):
        if value >= 1024 ** power:
            return f"{value / 1024 ** power:.4g}{unit}"
    return f"{value}B"


def _text(raw: object, where: str, kinds: tuple[type, ...] = (str,)) -> str:
    if isinstance(raw, bool) or not isinstance(raw, kinds):
        raise BuildError(f"{where}: expected {' or '.join(_KIND_NAMES[k] for k in kinds)}, "
                         f"got {raw!r}")
    return str(raw)


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number"}


def parse_size(raw: object, where: str) -> int:
    """A size as docker's ``RAMInBytes`` reads it: a number with an optional binary unit
    (``b``, ``k``, ``m``, ``g``, ``t``, ``p``, optionally ``i`` and ``b``: ``512m``,
    ``1.5GiB``); a TOML integer is bytes."""
    text = _text(raw, where, (str, int)).strip()
    match = _SIZE.match(text)
    if match is None:
        raise BuildError(f"{where}: invalid size {text!r} (expected a number with an "
                         "optional unit b, k, m or g, such as 512m)")
    number = float(match.group(1))
    unit = match.group(2).lower() if match.group(2) else None
    return int(number * 1024 ** _UNITS[unit])


def _memory(raw: object, where: str) -> int:
    value = parse_size(raw, where)
    if value < MIN_MEMORY:
        raise BuildError(f"{where}: the minimum memory limit is 6MiB")
    return value


def _memory_swap(raw: object, where: str) -> int:
    if str(raw).strip() == "-1":
        return UNLIMITED
    return parse_size(raw, where)


def _cpus(raw: object, where: str) -> int:
    text = _text(raw, where, (str, int, float)).strip()
    try:
        value = float(text)
    except ValueError:
        raise BuildError(f"{where}: {text!r} is not a number of CPUs") from None
    if not math.isfinite(value) or value <= 0:
        raise BuildError(f"{where}: the number of CPUs must be more than 0")
    nano = round(value * 1e9)
    available = os.cpu_count() or 1
    if nano < 10_000_000 or nano > available * 1_000_000_000:
        raise BuildError(f"{where}: the range of CPUs is from 0.01 to {available}.00, as "
                         f"there are only {available} CPUs available")
    return nano


def _integer(raw: object, where: str) -> int:
    text = _text(raw, where, (str, int)).strip()
    try:
        return int(text)
    except ValueError:
        raise BuildError(f"{where}: {text!r} is not an integer") from None


def _cpu_shares(raw: object, where: str) -> int | None:
    value = _integer(raw, where)
    if value == 0:
        return None
    if not MIN_CPU_SHARES <= value <= MAX_CPU_SHARES:
        raise BuildError(f"{where}: CPU shares must be between {MIN_CPU_SHARES} and "
                         f"{MAX_CPU_SHARES} (0: the default)")
    return value


def online_cpus() -> set[int]:
    """The CPUs this machine has online."""
    try:
        return cpu_set(Path("/sys/devices/system/cpu/online").read_text().strip())
    except (OSError, ValueError):
        return set(range(os.cpu_count() or 1))


def cpu_set(text: str) -> set[int]:
    """The CPU numbers of a list such as ``0-3,5`` (ValueError when it is not one)."""
    if not _CPU_LIST.match(text):
        raise ValueError(text)
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if last < first:
            raise ValueError(text)
        cpus.update(range(first, last + 1))
    return cpus


def _cpuset(raw: object, where: str) -> str:
    text = _text(raw, where).strip()
    try:
        wanted = cpu_set(text)
    except ValueError:
        raise BuildError(f"{where}: invalid CPU list {text!r} (expected numbers and ranges "
                         "such as 0-3,5)") from None
    online = online_cpus()
    if not wanted <= online:
        raise BuildError(f"{where}: requested CPUs are not available - requested {text}, "
                         f"available: {_ranges(online)}")
    return text


def _ranges(cpus: set[int]) -> str:
    out: list[str] = []
    for cpu in sorted(cpus):
        if out and out[-1].split("-")[-1] == str(cpu - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{cpu}"
        else:
            out.append(str(cpu))
    return ",".join(out)


def _pids(raw: object, where: str) -> int | None:
    value = _integer(raw, where)
    return value if value > 0 else None  # docker: 0 or -1 is unlimited


def _shm(raw: object, where: str) -> int | None:
    value = parse_size(raw, where)
    return value or None


def parse_ulimit(raw: object, where: str = "--ulimit") -> Ulimit:
    """docker's ``name=soft[:hard]`` (hard defaults to soft; -1 is unlimited)."""
    text = _text(raw, where).strip()
    name, eq, values = text.partition("=")
    if not eq:
        raise BuildError(f"{where} {text}: invalid ulimit argument (expected name=soft[:hard])")
    if name not in ULIMITS:
        raise BuildError(f"{where} {text}: invalid ulimit type {name!r} (expected one of "
                         f"{', '.join(sorted(ULIMITS))})")
    soft_text, colon, hard_text = values.partition(":")
    try:
        soft = int(soft_text)
        hard = int(hard_text) if colon else soft
    except ValueError:
        raise BuildError(f"{where} {text}: invalid ulimit value (expected integers, -1 for "
                         "unlimited)") from None
    for value in (soft, hard):
        if value < UNLIMITED:
            raise BuildError(f"{where} {text}: invalid ulimit value {value}")
    if _rlim(soft) > _rlim(hard):
        raise BuildError(f"{where} {text}: ulimit soft limit must be less than or equal to "
                         f"hard limit: {soft} > {hard}")
    return Ulimit(name, soft, hard)


def _rlim(value: int) -> float:
    return math.inf if value == UNLIMITED else value


_Parser = Callable[[object, str], Any]
#: field name → (flag, parser of one value)
_FIELDS: dict[str, tuple[str, _Parser]] = {
    "memory": ("--memory", _memory),
    "memory_swap": ("--memory-swap", _memory_swap),
    "cpus": ("--cpus", _cpus),
    "cpu_shares": ("--cpu-shares", _cpu_shares),
    "cpuset_cpus": ("--cpuset-cpus", _cpuset),
    "pids_limit": ("--pids-limit", _pids),
    "shm_size": ("--shm-size", _shm),
}
CONFIG_KEYS = (*(flag[2:] for flag, _ in _FIELDS.values()), "ulimit")
#: The limits' field names, in flag order (``--ulimit`` aside).
FIELDS = tuple(_FIELDS)


def from_config(table: Mapping[str, Any], path: Path | str | None) -> Limits:
    """The limits of a config file's ``[limits]`` table; an unknown key or a bad value is
    an error naming the file and the key."""
    prefix = f"builder config {path}: [limits]"
    unknown = sorted(set(table) - set(CONFIG_KEYS))
    if unknown:
        raise BuildError(f"{prefix}: unknown key {unknown[0]!r} (expected "
                         f"{', '.join(CONFIG_KEYS)})")
    values: dict[str, Any] = {}
    for name, (flag, parse) in _FIELDS.items():
        key = flag[2:]
        if key in table:
            values[name] = parse(table[key], f"{prefix} {key}")
    ulimits = table.get("ulimit", [])
    if not isinstance(ulimits, list):
        raise BuildError(f"{prefix} ulimit: expected a list of name=soft[:hard] strings")
    values["ulimits"] = _merge_ulimits([parse_ulimit(u, f"{prefix} ulimit") for u in ulimits])
    limits = Limits(**values, config=str(path) if path else None,
                    from_config=frozenset(n for n in values if n != "ulimits"))
    return check(limits)


def from_flags(values: Mapping[str, object], ulimits: Sequence[str] = (),
               defaults: Limits | None = None) -> Limits:
    """The limits of the flags, over ``defaults`` (those of the config file): ``values``
    maps a field name (``memory``, ``memory_swap``, ...) to its flag's text, None when the
    flag was not given; ``ulimits`` are the ``--ulimit`` values. A flag given wins over the
    default of the same name."""
    limits = defaults or Limits()
    changed: dict[str, Any] = {}
    for name, (flag, parse) in _FIELDS.items():
        raw = values.get(name)
        if raw is not None:
            changed[name] = parse(raw, flag)
    flags_ulimits = [parse_ulimit(u) for u in ulimits]
    if flags_ulimits:
        changed["ulimits"] = _merge_ulimits([*limits.ulimits, *flags_ulimits])
    if not changed:
        return limits
    return check(replace(limits, **changed,
                         from_config=limits.from_config - set(changed)))


def _merge_ulimits(items: list[Ulimit]) -> tuple[Ulimit, ...]:
    """One ulimit a name, the last given winning, in name order."""
    by_name = {u.name: u for u in items}
    return tuple(by_name[n] for n in sorted(by_name))


def check(limits: Limits) -> Limits:
    """Checks that involve two limits (docker's): ``--memory-swap`` needs ``--memory`` and
    may not be smaller."""
    if limits.memory_swap is not None:
        if limits.memory is None:
            raise BuildError(f"{limits.flag('memory_swap')}: set --memory as well when "
                             "limiting memory plus swap")
        if limits.memory_swap != UNLIMITED and limits.memory_swap < limits.memory:
            raise BuildError(f"{limits.flag('memory_swap')}: the memory plus swap limit must "
                             f"be at least the memory limit ({limits.flag('memory')})")
    return limits


def load(values: Mapping[str, object], ulimits: Sequence[str], table: Mapping[str, Any],
         path: Path | str | None) -> Limits:
    """The limits of a command: the config file's ``[limits]`` under the flags (see
    :func:`from_flags`)."""
    return from_flags(values, ulimits, from_config(table, path) if table else None)


__all__ = ["CONFIG_KEYS", "DEFAULT_SHM_SIZE", "FIELDS", "Limits", "Ulimit", "check",
           "format_size", "from_config", "from_flags", "human_size", "load", "parse_size",
           "parse_ulimit"]
