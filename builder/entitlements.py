"""Entitlements: what a build may do beyond the sandbox, granted as buildx's ``--allow``.

``network.host`` lets a RUN step use the host's network namespace; ``security.insecure`` lets
``RUN --security=insecure`` keep every capability of root and run without seccomp. Neither is
granted by default; a runner that trusts its Dockerfiles grants them for every build with
``insecure-entitlements`` in the builder's config file (:mod:`builder.config`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from builder.errors import BuildError

NETWORK_HOST = "network.host"
SECURITY_INSECURE = "security.insecure"
KNOWN = (NETWORK_HOST, SECURITY_INSECURE)


@dataclass(frozen=True)
class Entitlements:
    """The entitlements granted to one build."""

    granted: frozenset[str] = frozenset()

    def allows(self, name: str) -> bool:
        """Whether ``name`` (one of :data:`KNOWN`) is granted."""
        return name in self.granted

    def require(self, name: str, what: str) -> None:
        """Refuse ``what`` (``"RUN --network=host at Dockerfile:4"``) unless ``name`` is
        granted, with an error that says how to grant it."""
        if name not in self.granted:
            raise BuildError(f"{what} needs the {name} entitlement: pass --allow {name} "
                             f"(or list it in insecure-entitlements of the builder config)")

    def union(self, other: Entitlements) -> Entitlements:
        """The entitlements of both."""
        return Entitlements(self.granted | other.granted)


def parse(values: Iterable[str], source: str = "--allow") -> Entitlements:
    """``--allow`` values (each may be a comma-separated list) as entitlements; an unknown
    name is an error that names ``source``."""
    granted: set[str] = set()
    for value in values:
        for name in (v.strip() for v in value.split(",")):
            if not name:
                continue
            if name not in KNOWN:
                raise BuildError(f"{source} {name}: unknown entitlement "
                                 f"(expected {' or '.join(KNOWN)})")
            granted.add(name)
    return Entitlements(frozenset(granted))
