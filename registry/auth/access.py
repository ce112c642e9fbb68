"""Access control seam: what a request wants (:class:`Scope`), who is asking
(:class:`Identity`) and the :class:`Authorizer` that decides.

Every route declares its scopes; the dispatcher calls ``authorize`` before the handler runs.
An authorizer refuses with ``RegistryError(UNAUTHORIZED)`` (no or bad credentials; it sets
``WWW-Authenticate``) or ``RegistryError(DENIED)`` (known identity, not allowed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request

PULL = "pull"
PUSH = "push"
DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Scope:
    """A resource and the actions wanted on it, as in ``repository:team/app:pull,push``."""

    type: str
    name: str
    actions: tuple[str, ...]

    @classmethod
    def repository(cls, name: str, *actions: str) -> Scope:
        """A repository scope."""
        return cls("repository", name, tuple(actions))

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


CATALOG = Scope("registry", "catalog", ("*",))


@dataclass(frozen=True, slots=True)
class Identity:
    """Who made a request; ``subject`` is ``None`` for an anonymous client."""

    subject: str | None = None

    @property
    def anonymous(self) -> bool:
        """Whether no credentials were presented."""
        return self.subject is None


ANONYMOUS = Identity()


class Authorizer(Protocol):
    """Decides whether a request may have ``scopes``."""

    async def authorize(self, request: Request, scopes: Sequence[Scope]) -> Identity:
        """The identity behind ``request`` if it may have every scope; otherwise raise
        ``RegistryError`` with UNAUTHORIZED or DENIED."""
        ...

    def visible(self, identity: Identity, repository: str) -> bool:
        """Whether ``identity`` may see ``repository`` in the catalog (may pull it)."""
        ...


def can_see(authorizer: Authorizer, identity: Identity, repository: str) -> bool:
    """``authorizer.visible(identity, repository)``; an authorizer without ``visible``
    shows everything to whoever it let list the catalog."""
    visible = getattr(authorizer, "visible", None)
    return True if visible is None else bool(visible(identity, repository))


class AllowAll:
    """Grants everything to everyone (an open registry)."""

    async def authorize(self, request: Request, scopes: Sequence[Scope]) -> Identity:
        """Always the anonymous identity."""
        return ANONYMOUS

    def visible(self, identity: Identity, repository: str) -> bool:
        """Everything is visible."""
        return True
