"""The authorizers behind ``auth = "token"`` and ``auth = "basic"``.

:class:`TokenAuthorizer` honours ``Authorization: Bearer <JWT>`` issued by our token
endpoint: no or a bad token is 401 UNAUTHORIZED with a ``WWW-Authenticate: Bearer
realm=…,service=…,scope=…`` challenge; a valid token that lacks an action is DENIED, with
status 401 and ``error="insufficient_scope"`` when asking again could help (the rules would
grant it, or the token is anonymous) and 403 when it could not. A DENIED error names the
repository, the action and why (:mod:`registry.auth.explain`) in its message and detail,
and in the challenge's ``error_description`` when the rules refuse.

:class:`BasicAuthorizer` checks HTTP basic credentials on every request against the same
users and rules (verified credentials are remembered for a minute, until the users change);
a request without credentials passes only where the rules let anonymous clients in.

Both count failed logins per user and client address (:mod:`registry.auth.throttle`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from starlette.requests import Request

from registry.auth.access import ANONYMOUS, Identity, Scope
from registry.auth.explain import denial
from registry.auth.robot_logins import SecretLogins, project_made
from registry.auth.rules import ANONYMOUS_PRINCIPAL, AccessPolicy, Principal
from registry.auth.shared_state import load_signing_key, open_login_throttle, open_user_store
from registry.auth.throttle import LoginThrottle
from registry.auth.tokens import TokenError, TokenIssuer, TokenVerifier
from registry.auth.users import UserError, UserStore
from registry.config import ConfigError, Settings
from registry.errors import DENIED, UNAUTHORIZED, RegistryError
from registry.handlers.base import absolute_url
from registry.robots.service import RobotRefused, RobotService, is_robot, open_robot_store

AUTH_DIR = "auth"
BASIC_CACHE_SECONDS = 60.0
_CACHE_SIZE = 1024
NOBODY = ""
log = logging.getLogger("registry.auth")

__all__ = ["BasicAuthorizer", "Logins", "TokenAuthorizer", "auth_directory",
           "basic_authorizer", "build_authorizer", "client_address", "token_authorizer"]


def auth_directory(root: Path) -> Path:
    """Where the users file and the token signing key live."""
    return root / AUTH_DIR


def client_address(request: Request) -> str:
    """The peer address of the connection (proxies' headers are not trusted)."""
    return request.client.host if request.client is not None else "unknown"


def _access_detail(scopes: Sequence[Scope]) -> list[dict[str, str]] | None:
    """The access records a refusal concerns, as distribution reports them."""
    if not scopes:
        return None
    return [{"Type": s.type, "Name": s.name, "Action": ",".join(s.actions)} for s in scopes]


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _description(text: str) -> str:
    """``text`` as an RFC 6750 ``error_description``: printable ASCII without ``"`` and
    ``\\``."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)[:500]


class Logins:
    """Checks passwords and refresh tokens, throttled per user and client address
    (:mod:`registry.auth.throttle`), and knows each user's principal."""

    def __init__(self, users: UserStore, policy: AccessPolicy, throttle: LoginThrottle,
                 secrets: SecretLogins | None = None) -> None:
        self.users = users
        self.policy = policy
        self.throttle = throttle
        self.secrets = secrets

    def generation(self) -> tuple[int, int]:
        """Changes whenever a user, robot or CLI secret does."""
        return (self.users.refresh(),
                self.secrets.generation() if self.secrets is not None else 0)

    def principal(self, subject: str | None) -> Principal:
        """The principal of ``subject`` with its groups (anonymous for ``None``)."""
        if subject is None:
            return ANONYMOUS_PRINCIPAL
        robot = self.secrets.principal(subject) if self.secrets is not None else None
        if robot is not None:
            return robot
        user = self.users.get(subject)
        return self.policy.principal(subject, user.groups if user is not None else ())

    def _password(self, client: str, name: str, password: str) -> Principal:
        self.throttle.check(name, client)
        if self.secrets is not None:
            if is_robot(name):
                try:
                    who = self.secrets.robot(name, password)
                except RobotRefused as exc:
                    if exc.wrong_secret:
                        self.throttle.failed(name, client)
                    raise RegistryError(UNAUTHORIZED, str(exc)) from None
                self.throttle.succeeded(name, client)
                return who
            found = self.secrets.user_secret(name, password)
            if found is not None:
                self.throttle.succeeded(name, client)
                return found
        try:
            user = self.users.authenticate(name, password)
        except UserError as exc:
            log.error("%s", exc)
            raise RegistryError(UNAUTHORIZED, "the users cannot be read; see the registry "
                                "log") from None
        if user is None:
            self.throttle.failed(name, client)
            raise RegistryError(UNAUTHORIZED, "incorrect username or password")
        self.throttle.succeeded(name, client)
        return self.policy.principal(user.name, user.groups)

    async def password(self, client: str, name: str, password: str) -> Principal:
        """The principal of ``name`` if ``password`` is right; UNAUTHORIZED otherwise,
        TOOMANYREQUESTS when ``name`` failed too often (from ``client`` or everywhere)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._password, client, name, password)

    def _refresh(self, client: str, verifier: TokenVerifier, token: str) -> Principal:
        self.throttle.check(NOBODY, client)
        try:
            subject, stamp = verifier.verify_refresh(token)
        except TokenError as exc:
            self.throttle.failed(NOBODY, client)
            raise RegistryError(UNAUTHORIZED, f"refresh token refused: {exc}") from None
        found = self.secrets.refresh(subject, stamp) if self.secrets is not None else None
        if found is not None:
            return found
        user = self.users.get(subject)
        if user is None or user.stamp != stamp:
            raise RegistryError(UNAUTHORIZED, "refresh token refused: the user or its "
                                "password changed; log in again")
        return self.policy.principal(user.name, user.groups)

    async def refresh(self, client: str, verifier: TokenVerifier, token: str) -> Principal:
        """The principal a refresh token stands for; UNAUTHORIZED if it is not valid. Bad
        tokens count against ``client`` only (not against any user); a user locked out for
        failed passwords keeps its refresh tokens, which are no guesses."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._refresh, client, verifier, token)

    def stamp_of(self, who: Principal) -> str:
        """What ``who``'s refresh tokens carry: the stamp of the secret it logged in with
        (a robot's, a CLI secret's), or of its password."""
        return who.credential or self.stamp(who.subject or "")

    def stamp(self, subject: str) -> str:
        """The password stamp of a user (for its refresh tokens)."""
        user = self.users.get(subject)
        return user.stamp if user is not None else ""

    def permits(self, who: Principal, scopes: Sequence[Scope]) -> bool:
        """Whether the rules give ``who`` every action of every scope."""
        policy = self.policy
        for scope in scopes:
            allowed = policy.allowed(who, scope.type, scope.name)
            if not all(a in allowed for a in scope.actions):
                return False
        return True

    def visible(self, identity: Identity, repository: str) -> bool:
        """Whether ``identity`` may pull ``repository`` (what the catalog lists)."""
        who = self.principal(identity.subject)
        return "pull" in self.policy.allowed(who, "repository", repository)


class TokenAuthorizer:
    """Bearer tokens of the Docker registry token specification (module docstring)."""

    def __init__(self, logins: Logins, issuer: TokenIssuer, verifier: TokenVerifier,
                 realm: str = "") -> None:
        self.logins = logins
        self.issuer = issuer
        self.verifier = verifier
        self.realm = realm
        self.service = issuer.service

    def realm_for(self, request: Request) -> str:
        """The token endpoint's URL as this client should reach it."""
        return self.realm or absolute_url(request, "/token")

    def _challenge(self, request: Request, scopes: Sequence[Scope], error: str = "",
                   description: str = "") -> str:
        parts = [f'Bearer realm="{_quote(self.realm_for(request))}"',
                 f'service="{_quote(self.service)}"']
        if scopes:
            parts.append(f'scope="{" ".join(str(s) for s in scopes)}"')
        if error:
            parts.append(f'error="{error}"')
        if description:
            parts.append(f'error_description="{_description(description)}"')
        return ",".join(parts)

    def unauthorized(self, request: Request, scopes: Sequence[Scope], message: str,
                     error: str = "") -> RegistryError:
        """A 401 with the challenge that sends the client to the token endpoint."""
        return RegistryError(UNAUTHORIZED, message, detail=_access_detail(scopes),
                             headers={"WWW-Authenticate": self._challenge(request, scopes,
                                                                          error)})

    async def authorize(self, request: Request, scopes: Sequence[Scope]) -> Identity:
        """The token's subject if its access list covers every scope."""
        header = request.headers.get("authorization")
        if header is None or header[:7].lower() != "bearer ":
            raise self.unauthorized(request, scopes, "authentication required")
        try:
            claims = self.verifier.verify(header[7:].strip())
        except TokenError as exc:
            raise self.unauthorized(request, scopes, str(exc), "invalid_token") from None
        for scope in scopes:
            if not claims.allows(scope.type, scope.name, scope.actions):
                raise self._insufficient(request, scopes, claims.subject or None)
        return Identity(claims.subject) if claims.subject else ANONYMOUS

    def _insufficient(self, request: Request, scopes: Sequence[Scope],
                      subject: str | None) -> RegistryError:
        who = self.logins.principal(subject)
        found = denial(self.logins.policy, who, scopes)
        if found is None:
            wanted = " ".join(str(s) for s in scopes)
            message = (f"access denied: the token does not grant {wanted}; ask "
                       f"{self.realm_for(request)} for a token with that scope")
            detail = _access_detail(scopes)
        else:
            message, detail = f"access denied: {found.reason}", [found.record()]
        if who.anonymous or found is None:
            # Docker shows a challenge's error_description rather than the body's message.
            description = "" if found is None else message
            return RegistryError(DENIED, message, status=401, detail=detail,
                                 headers={"WWW-Authenticate": self._challenge(
                                     request, scopes, "insufficient_scope", description)})
        return RegistryError(DENIED, message, detail=detail)

    def visible(self, identity: Identity, repository: str) -> bool:
        """Whether the catalog shows ``repository`` to ``identity``."""
        return self.logins.visible(identity, repository)


class BasicAuthorizer:
    """HTTP basic credentials on every request (module docstring)."""

    def __init__(self, logins: Logins, realm: str = "pybuild-registry") -> None:
        self.logins = logins
        self.realm = realm
        self._cache: OrderedDict[str, tuple[Principal, float, tuple[int, int]]] = OrderedDict()

    def unauthorized(self, scopes: Sequence[Scope], message: str) -> RegistryError:
        """A 401 asking for basic credentials."""
        return RegistryError(UNAUTHORIZED, message, detail=_access_detail(scopes),
                             headers={"WWW-Authenticate": f'Basic realm="{_quote(self.realm)}"'})

    async def _principal(self, request: Request, header: str,
                         scopes: Sequence[Scope]) -> Principal:
        generation = self.logins.generation()
        now = time.monotonic()
        hit = self._cache.get(header)
        if hit is not None and hit[1] > now and hit[2] == generation:
            self._cache.move_to_end(header)
            return hit[0]
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise self.unauthorized(scopes, "malformed basic credentials") from None
        name, sep, password = decoded.partition(":")
        if not sep or not name:
            raise self.unauthorized(scopes, "malformed basic credentials")
        try:
            who = await self.logins.password(client_address(request), name, password)
        except RegistryError as err:
            if err.code is UNAUTHORIZED:
                raise self.unauthorized(scopes, err.message) from None
            raise
        until = now + BASIC_CACHE_SECONDS
        if who.robot is not None and who.robot.expires_at is not None:
            until = min(until, now + who.robot.expires_at - time.time())
        self._cache[header] = (who, until, self.logins.generation())
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return who

    async def authorize(self, request: Request, scopes: Sequence[Scope]) -> Identity:
        """The user behind the credentials if the rules allow every scope."""
        header = request.headers.get("authorization")
        if header is None:
            if scopes and self.logins.permits(ANONYMOUS_PRINCIPAL, scopes):
                return ANONYMOUS
            raise self.unauthorized(scopes, "authentication required")
        if header[:6].lower() != "basic ":
            raise self.unauthorized(scopes, "basic credentials required")
        who = await self._principal(request, header, scopes)
        found = denial(self.logins.policy, who, scopes)
        if found is not None:
            raise RegistryError(DENIED, f"access denied: {found.reason}",
                                detail=[found.record()])
        return Identity(who.subject)

    def visible(self, identity: Identity, repository: str) -> bool:
        """Whether the catalog shows ``repository`` to ``identity``."""
        return self.logins.visible(identity, repository)


def with_projects(policy: AccessPolicy, settings: Settings) -> AccessPolicy:
    """``policy`` combined with the project roles of ``settings``' project store."""
    from registry.projects.backends import open_project_store
    from registry.projects.policy import ProjectPolicy, ProjectRoles

    return ProjectPolicy(policy, ProjectRoles(open_project_store(settings)))


def _logins(settings: Settings) -> Logins:
    if settings.htpasswd is not None and not settings.htpasswd.is_file():
        raise ConfigError(f"htpasswd file {str(settings.htpasswd)!r} does not exist")
    users = open_user_store(settings)
    try:
        users.users()
    except UserError as exc:
        raise ConfigError(str(exc)) from None
    policy = with_projects(AccessPolicy(settings.access, settings.admins, settings.groups),
                           settings)
    throttle = open_login_throttle(settings)
    secrets = SecretLogins(RobotService(open_robot_store(settings),
                                        project_made(getattr(policy, "roles", None))),
                           users, policy)
    return Logins(users, policy, throttle, secrets)


def token_authorizer(settings: Settings) -> TokenAuthorizer:
    """The token authorizer of ``settings``; makes the signing key on first use."""
    try:
        key = load_signing_key(settings)
    except (TokenError, OSError) as exc:
        raise ConfigError(str(exc)) from None
    issuer = TokenIssuer(key, issuer=settings.token_issuer, service=settings.token_service,
                         ttl=settings.token_ttl, refresh_ttl=settings.refresh_ttl)
    verifier = TokenVerifier(key.public, key.kid, issuer=settings.token_issuer,
                             service=settings.token_service)
    return TokenAuthorizer(_logins(settings), issuer, verifier, settings.token_realm)


def basic_authorizer(settings: Settings) -> BasicAuthorizer:
    """The basic-credentials authorizer of ``settings``."""
    return BasicAuthorizer(_logins(settings), settings.token_service)


def build_authorizer(settings: Settings) -> TokenAuthorizer | BasicAuthorizer:
    """The authorizer of ``settings.auth_mode`` (``token`` or ``basic``)."""
    if settings.auth_mode == "basic":
        return basic_authorizer(settings)
    return token_authorizer(settings)
