"""``/token``: the authorization service of the Docker registry token specification.

``GET /token?service=…&scope=…&scope=…[&offline_token=true][&client_id=…]`` with HTTP basic
credentials, or none for an anonymous token; ``POST /token`` with the OAuth2 form
(``grant_type=password`` with ``username``/``password``, or ``grant_type=refresh_token``
with ``refresh_token``; ``scope`` space-separated; ``access_type=offline`` asks for a refresh
token). The answer::

    {"token": …, "access_token": …, "expires_in": 300, "issued_at": "…Z",
     "scope": "repository:team/app:pull,push", "refresh_token": …}

grants, for each scope asked, the actions both asked for and allowed by the rules (possibly
none; the log says why an action was left out). Wrong credentials are 401 UNAUTHORIZED; a
user that failed too often (:mod:`registry.auth.throttle`) is 429 TOOMANYREQUESTS.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import logging
from collections.abc import Iterable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from registry.auth.access import Authorizer, Scope
from registry.auth.authorizers import TokenAuthorizer, client_address
from registry.auth.explain import denial
from registry.auth.rules import ANONYMOUS_PRINCIPAL, Principal
from registry.auth.tokens import Access
from registry.errors import UNAUTHORIZED, UNSUPPORTED, RegistryError, error_response
from registry.handlers.base import json_response, read_body
from registry.names import check_name

MAX_FORM_BYTES = 64 * 1024
MAX_SCOPES = 64
log = logging.getLogger("registry.auth")


def _bad_request(message: str) -> RegistryError:
    return RegistryError(UNSUPPORTED, message, status=400)


def parse_scope(text: str) -> tuple[str, str, tuple[str, ...]]:
    """``type[(class)]:name:actions`` as ``(type, name, actions)``; the name may itself hold
    ``:`` (a registry host with a port). Repository names are checked (NAME_INVALID)."""
    parts = text.split(":")
    if len(parts) < 3 or not parts[0] or not parts[-1]:
        raise _bad_request(f"malformed scope {text[:200]!r}: want type:name:actions")
    type_ = parts[0].split("(", 1)[0]
    name = ":".join(parts[1:-1])
    actions = tuple(dict.fromkeys(a for a in parts[-1].split(",") if a))
    if type_ == "repository":
        check_name(name)
    return type_, name, actions


def _scopes(values: Iterable[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    texts = [t for value in values for t in value.split()]
    if len(texts) > MAX_SCOPES:
        raise _bad_request(f"too many scopes ({len(texts)}; at most {MAX_SCOPES})")
    return [parse_scope(t) for t in texts]


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    if header[:6].lower() != "basic ":
        raise RegistryError(UNAUTHORIZED, "the token endpoint takes basic credentials")
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise RegistryError(UNAUTHORIZED, "malformed basic credentials") from None
    name, sep, password = decoded.partition(":")
    if not sep or not name:
        raise RegistryError(UNAUTHORIZED, "malformed basic credentials")
    return name, password


class TokenEndpoint:
    """Issues tokens for a :class:`TokenAuthorizer` (see the module docstring)."""

    def __init__(self, authorizer: TokenAuthorizer) -> None:
        self.authorizer = authorizer
        self.logins = authorizer.logins
        self.issuer = authorizer.issuer

    def _grant(self, who: Principal, scopes: list[tuple[str, str, tuple[str, ...]]]
               ) -> list[Access]:
        merged: dict[tuple[str, str], set[str]] = {}
        for type_, name, actions in scopes:
            merged.setdefault((type_, name), set()).update(actions)
        granted = []
        for (type_, name), wanted in merged.items():
            actions = self.logins.policy.grant(who, type_, name, wanted)
            if actions:
                granted.append(Access(type_, name, actions))
            refused = denial(self.logins.policy, who,
                             [Scope(type_, name, tuple(sorted(wanted - {"*"})))])
            if refused is not None:
                log.info("token for %s leaves out %s on %s:%s: %s",
                         who.subject or "an anonymous client", refused.action, type_, name,
                         refused.reason)
        return granted

    def _answer(self, who: Principal, scopes: list[tuple[str, str, tuple[str, ...]]],
                offline: bool) -> Response:
        access = self._grant(who, scopes)
        issued = self.issuer.access_token(who.subject or "", access)
        claims = issued.claims
        doc: dict[str, object] = {
            "token": issued.token,
            "access_token": issued.token,
            "expires_in": claims.expires - claims.issued_at,
            "issued_at": datetime.datetime.fromtimestamp(
                claims.issued_at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "scope": " ".join(str(a) for a in access),
        }
        if offline and who.subject is not None:
            doc["refresh_token"] = self.issuer.refresh_token(
                who.subject, self.logins.stamp_of(who))
        return json_response(doc, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _check_service(self, service: str | None) -> None:
        if service and service != self.issuer.service:
            raise _bad_request(f"unknown service {service[:100]!r}; this is "
                               f"{self.issuer.service!r}")

    async def get(self, request: Request) -> Response:
        """The token specification's GET form."""
        params = request.query_params
        self._check_service(params.get("service"))
        scopes = _scopes(params.getlist("scope"))
        credentials = _basic_credentials(request)
        who = ANONYMOUS_PRINCIPAL
        if credentials is not None:
            who = await self.logins.password(client_address(request), *credentials)
        offline = params.get("offline_token", "").lower() in ("true", "1")
        return self._answer(who, scopes, offline)

    async def post(self, request: Request) -> Response:
        """The OAuth2 form (``password`` and ``refresh_token`` grants)."""
        body = await read_body(request, MAX_FORM_BYTES,
                               lambda: _bad_request("token request form too large"))
        try:
            form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            raise _bad_request("token request form is not UTF-8") from None
        self._check_service(form.get("service"))
        scopes = _scopes([form.get("scope", "")])
        grant = form.get("grant_type", "")
        client = client_address(request)
        if grant == "password":
            name, password = form.get("username", ""), form.get("password", "")
            if not name:
                raise RegistryError(UNAUTHORIZED, "grant_type=password needs a username")
            who = await self.logins.password(client, name, password)
        elif grant == "refresh_token":
            who = await self.logins.refresh(client, self.authorizer.verifier,
                                            form.get("refresh_token", ""))
        else:
            raise _bad_request(f"unsupported grant_type {grant[:40]!r}: use password or "
                               "refresh_token")
        return self._answer(who, scopes, form.get("access_type") == "offline")

    async def handle(self, request: Request) -> Response:
        """Answer ``GET``/``POST /token``; failures as the spec's error body."""
        try:
            if request.method == "POST":
                return await self.post(request)
            return await self.get(request)
        except RegistryError as err:
            if err.code is UNAUTHORIZED and request.method == "GET":
                err.headers.setdefault("WWW-Authenticate",
                                       f'Basic realm="{self.issuer.service}"')
            log.info("token request from %s refused: %s", client_address(request), err.message)
            return error_response(err)


def token_routes(authorizer: Authorizer) -> list[BaseRoute]:
    """The ``/token`` route when ``authorizer`` issues tokens; otherwise none."""
    if not isinstance(authorizer, TokenAuthorizer):
        return []
    return [Route("/token", TokenEndpoint(authorizer).handle, methods=["GET", "POST"])]
