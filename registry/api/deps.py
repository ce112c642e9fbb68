"""Who calls the management API: FastAPI dependencies that authenticate a request.

A caller presents HTTP basic credentials (a user's password; whatever else the registry's
:class:`~registry.auth.authorizers.Logins` accepts) or ``Authorization: Bearer <token>``
with an access token of our ``/token`` endpoint (its subject is the caller; the token's
repository scopes do not limit the API), or nothing (an anonymous caller). Bad credentials
are 401 UNAUTHORIZED with a ``WWW-Authenticate: Basic`` challenge; a caller that may not do
what it asks is 403 DENIED. On a registry without authentication (``auth = "none"``)
every caller is treated as a system admin, as the registry itself lets everyone do
everything.

Routers declare what they need::

    @router.get("/things")
    def things(caller: UserCaller, svc: ServicesDep) -> ...:
        ...

The annotated types: ``AnyCaller`` admits anonymous callers, ``UserCaller`` refuses them
(401), ``AdminCaller`` refuses everyone but the ``admins`` of the config (403);
``PrincipalDep`` gives the bare :class:`~registry.auth.rules.Principal`; ``ServicesDep`` the
server's :class:`~registry.handlers.base.Services`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends
from starlette.requests import Request

from registry.auth.access import AllowAll
from registry.auth.authorizers import Logins, client_address
from registry.auth.rules import ANONYMOUS_PRINCIPAL, Principal
from registry.auth.tokens import TokenError
from registry.errors import DENIED, UNAUTHORIZED, RegistryError
from registry.handlers.base import Services

REALM = "pybuild-registry-api"


@dataclass(frozen=True)
class Caller:
    """An authenticated (or anonymous) caller of the API.

    ``admin``: a system admin (the config's ``admins``, or anyone on a registry without
    authentication); ``via``: how it authenticated (``basic``, ``bearer``, ``anonymous``,
    ``open``); ``address``: the client address of the request (for the audit log)."""

    principal: Principal
    admin: bool = False
    via: str = "anonymous"
    address: str = ""

    @property
    def anonymous(self) -> bool:
        """Whether no credentials were presented."""
        return self.principal.subject is None

    @property
    def name(self) -> str:
        """The caller's name for messages (``anonymous`` without credentials)."""
        return self.principal.subject or "anonymous"

    @property
    def audited(self) -> tuple[str, str]:
        """Who the audit log names for the caller's changes: (subject, address)."""
        return self.principal.subject or "", self.address or "unknown"


def unauthorized(message: str) -> RegistryError:
    """A 401 asking for credentials."""
    return RegistryError(UNAUTHORIZED, message,
                         headers={"WWW-Authenticate": f'Basic realm="{REALM}"'})


def denied(message: str, detail: Any = None) -> RegistryError:
    """A 403 DENIED naming what was refused and why."""
    return RegistryError(DENIED, message, detail=detail)


def services(request: Request) -> Services:
    """The server's shared services."""
    found: Services = request.app.state.services
    return found


def _logins(svc: Services) -> Logins | None:
    logins = getattr(svc.authorizer, "logins", None)
    return logins if isinstance(logins, Logins) else None


async def _basic(request: Request, logins: Logins, header: str) -> Principal:
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise unauthorized("malformed basic credentials") from None
    name, sep, password = decoded.partition(":")
    if not sep or not name:
        raise unauthorized("malformed basic credentials")
    try:
        return await logins.password(client_address(request), name, password)
    except RegistryError as err:
        if err.code is UNAUTHORIZED:
            raise unauthorized(err.message) from None
        raise


def _bearer(svc: Services, logins: Logins, header: str) -> Principal:
    verifier = getattr(svc.authorizer, "verifier", None)
    if verifier is None:
        raise unauthorized("this registry issues no bearer tokens; use basic credentials")
    try:
        claims = verifier.verify(header[7:].strip())
    except TokenError as exc:
        raise unauthorized(f"bearer token refused: {exc}") from None
    return logins.principal(claims.subject or None)


ServicesDep = Annotated[Services, Depends(services)]


async def current_caller(request: Request, svc: ServicesDep) -> Caller:
    """The caller of ``request`` (anonymous without credentials); 401 for bad ones."""
    address = client_address(request)
    if isinstance(svc.authorizer, AllowAll):
        return Caller(ANONYMOUS_PRINCIPAL, admin=True, via="open", address=address)
    logins = _logins(svc)
    if logins is None:
        raise denied("the management API needs auth = \"token\" or \"basic\"")
    header = request.headers.get("authorization")
    if header is None:
        return Caller(ANONYMOUS_PRINCIPAL, address=address)
    scheme = header[:7].lower()
    if scheme.startswith("basic "):
        who, via = await _basic(request, logins, header), "basic"
    elif scheme == "bearer ":
        who, via = _bearer(svc, logins, header), "bearer"
    else:
        raise unauthorized("unsupported authorization scheme: use Basic or Bearer")
    return Caller(who, admin=logins.policy.is_admin(who), via=via, address=address)


AnyCaller = Annotated[Caller, Depends(current_caller)]


async def authenticated(caller: AnyCaller) -> Caller:
    """The caller, who must have presented credentials (401 otherwise)."""
    if caller.anonymous and not caller.admin:
        raise unauthorized("authentication required")
    return caller


UserCaller = Annotated[Caller, Depends(authenticated)]


async def system_admin(caller: UserCaller) -> Caller:
    """The caller, who must be a system admin (403 DENIED otherwise)."""
    if not caller.admin:
        raise denied(f"access denied: {caller.name} is not a system admin (the config's "
                     "admins)")
    return caller


AdminCaller = Annotated[Caller, Depends(system_admin)]


async def current_principal(caller: AnyCaller) -> Principal:
    """The bare principal of the caller."""
    return caller.principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
