"""The executor seam: what a RUN step asks for and what it gets back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from builder.limits import Limits

Network = Literal["default", "none", "host"]
#: ``sandbox``: docker's default confinement (capabilities, seccomp, masked paths);
#: ``insecure``: every capability of root and no seccomp (``RUN --security=insecure``).
Security = Literal["sandbox", "insecure"]


@dataclass(frozen=True)
class BindMount:
    """A host path bind-mounted at ``target`` (absolute, inside the container) for one run."""

    source: str
    target: str
    readonly: bool = True


@dataclass(frozen=True)
class TmpfsMount:
    """A fresh, empty tmpfs at ``target`` (absolute, inside the container) for one run, of at
    most ``size`` bytes (None: the kernel's default, half of the RAM)."""

    target: str
    size: int | None = None


@dataclass(frozen=True)
class ExtraHost:
    """One more ``/etc/hosts`` line for a run: ``name`` resolves to ``address`` (an IPv4 or
    IPv6 address, as ``--add-host name:address`` gives it)."""

    name: str
    address: str


@dataclass(frozen=True)
class RunSpec:
    """One command to run: argv, the exact environment (``KEY=value``), working directory,
    numeric ``uid:gid``, hostname, network mode, extra mounts, extra ``/etc/hosts`` lines,
    resource limits (none by default: no cgroup is made) and security mode.

    ``network`` is ``default`` (a network namespace of its own, with outbound access through
    a user-mode network stack), ``none`` (its own namespace with only a loopback interface)
    or ``host`` (the host's network namespace; callers check the ``network.host``
    entitlement before asking for it).

    A :class:`BindMount` whose source is a directory binds a directory, one whose source is
    any other file binds that file. Extra mounts are made shallowest target first, so one can
    lie inside another (a secret file inside a tmpfs)."""

    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str = "/"
    user: str = "0:0"
    hostname: str = "buildkitsandbox"
    network: Network = "default"
    groups: tuple[int, ...] = ()
    extra_mounts: tuple[BindMount | TmpfsMount, ...] = ()
    limits: Limits = field(default_factory=Limits)
    security: Security = "sandbox"
    extra_hosts: tuple[ExtraHost, ...] = ()


@dataclass(frozen=True)
class RunResult:
    """How a run ended: its exit code (128+N when killed by signal N), the last bytes of
    its combined stdout and stderr, and, when a resource limit made it fail, which one
    (``was killed by the kernel's OOM killer: …``)."""

    exit_code: int
    output_tail: bytes
    stopped_by: str | None = None


class Executor(Protocol):
    """Runs a command with a writable, already-mounted root filesystem as its ``/``."""

    def run(self, spec: RunSpec, rootfs: Path) -> RunResult:
        """Run ``spec`` in ``rootfs``; every mount and process it made is gone on return."""
        ...
