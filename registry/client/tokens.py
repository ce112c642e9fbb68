"""Asking a token service for a bearer token (the Docker registry token specification).

With a user name and password: ``GET realm?service=…&scope=…`` with basic credentials; with
an identity token: ``POST realm`` with ``grant_type=refresh_token``; without credentials:
an anonymous ``GET``. The answer holds ``token`` (or ``access_token``) and ``expires_in``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import httpx

from registry.client.auth import Challenge, Token, token_lifetime
from registry.client.errors import ProtocolError, Unauthorized
from registry.client.responses import describe_errors, login_hint

if TYPE_CHECKING:
    from registry.client.transport import Transport

CLIENT_ID = "pybuild"
MAX_TOKEN_RESPONSE = 1 << 20


def request_token(transport: Transport, challenge: Challenge, scopes: Sequence[str]) -> Token:
    """A token for ``scopes`` from ``challenge``'s realm, with the transport's
    credentials. Unauthorized when the service refuses them."""
    realm = challenge.realm
    if not realm.startswith(("https://", "http://")):
        raise ProtocolError(f"registry {transport.registry} sent a bearer challenge without "
                            f"a usable realm ({realm!r})", registry=transport.registry)
    creds = transport.credentials
    client = transport.http

    def ask() -> httpx.Response:
        if creds is not None and creds.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "client_id": CLIENT_ID, "scope": " ".join(scopes)}
            if challenge.service:
                form["service"] = challenge.service
            return client.post(realm, data=form)
        params: list[tuple[str, str]] = []
        if challenge.service:
            params.append(("service", challenge.service))
        params.extend(("scope", s) for s in scopes)
        auth = (creds.username, creds.password) if creds is not None and creds.username \
            else None
        return client.get(realm, params=tuple(params), auth=auth)

    started = time.monotonic()
    response = transport.retrying(ask, "token", url=realm)
    registry = transport.registry
    if response.status_code in (401, 403):
        who = f"user {creds.username!r}" if creds is not None and creds.username else (
            "the identity token" if creds is not None else "anonymous access")
        reason = (f"registry {registry} refused {who} at its token service {realm} "
                  f"({describe_errors(response)})")
        raise Unauthorized(f"{reason}; run `{login_hint(registry)}` to store valid "
                           "credentials", registry=registry, reason=reason)
    if response.status_code != 200:
        raise ProtocolError(f"token service {realm} of registry {registry} answered "
                            f"{describe_errors(response)}", registry=registry,
                            status=response.status_code)
    try:
        doc = json.loads(response.content[:MAX_TOKEN_RESPONSE])
        value = doc.get("token") or doc.get("access_token")
    except (ValueError, UnicodeDecodeError, AttributeError):
        value, doc = None, {}
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"token service {realm} of registry {registry} sent no token",
                            registry=registry)
    return Token(value, started + token_lifetime(doc.get("expires_in")))


__all__ = ["request_token"]
