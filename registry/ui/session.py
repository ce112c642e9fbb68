"""Who looks at the web UI: the session cookie, the viewer it names, and CSRF tokens.

The session is one cookie (:data:`SESSION_COOKIE`) that holds, signed with an HMAC key
derived from the registry's token signing key (so every worker and replica accepts it), a
random nonce, the user it stands for (none before logging in), the user's password stamp
and when it was issued. A session ends after :data:`SESSION_SECONDS`, at logout, and as soon
as the user is removed or its password changes. The cookie is ``HttpOnly``,
``SameSite=Lax`` and, when the registry speaks TLS, ``Secure``.

Every form carries a CSRF token: an HMAC of the session's nonce. A visitor without a session
gets a fresh anonymous one with its first page, so the login form has a token too; logging
in starts a new session with a new nonce (an attacker's planted cookie does not survive it).

On a registry without authentication (``auth = "none"``) every visitor is the ``anonymous``
viewer with every right, as the registry itself lets everyone do everything.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from starlette.requests import Request
from starlette.responses import Response

from registry.api.deps import Caller
from registry.auth.access import AllowAll
from registry.auth.authorizers import Logins, client_address
from registry.auth.rules import ANONYMOUS_PRINCIPAL, Principal
from registry.auth.shared_state import load_signing_key
from registry.handlers.base import Services
from registry.projects.service import Actor
from registry.ui.errors import UIForbidden

SESSION_COOKIE = "pybuild_ui"
SESSION_SECONDS = 12 * 3600
CSRF_FIELD = "csrf"
_STATE_VIEWER = "ui_viewer"
_STATE_SESSION = "ui_session"
_STATE_SET = "ui_set_cookie"


@dataclass(frozen=True)
class Viewer:
    """A viewer of the UI.

    ``name``: the user (``anonymous`` on a registry without authentication); ``is_admin``:
    a system admin (the config's ``admins``, or everyone without authentication);
    ``principal``: for the access policy; ``address``: the client address (audit log);
    ``open``: the registry has no authentication."""

    name: str
    is_admin: bool
    principal: Principal
    address: str = ""
    open: bool = False

    def actor(self) -> Actor:
        """The viewer as the project service's :class:`~registry.projects.service.Actor`."""
        return Actor(self.principal, admin=self.is_admin, address=self.address)

    def caller(self) -> Caller:
        """The viewer as the management API's :class:`~registry.api.deps.Caller`."""
        return Caller(self.principal, admin=self.is_admin,
                      via="open" if self.open else "session", address=self.address)


@dataclass(frozen=True)
class Session:
    """The content of a session cookie."""

    nonce: str
    user: str | None = None
    stamp: str = ""
    issued: float = 0.0


class SessionKeys:
    """The HMAC key of session cookies and CSRF tokens, made once per process from the
    token signing key (root/auth, or the database replicas share)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._key: bytes | None = None
        self._guard = threading.Lock()

    def key(self) -> bytes:
        """The key (read on first use)."""
        with self._guard:
            if self._key is None:
                private = load_signing_key(self.services.settings).private.private_bytes(
                    serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption())
                self._key = hmac.digest(private, b"pybuild registry web UI session",
                                        "sha256")
            return self._key

    def sign(self, data: bytes) -> str:
        """The URL-safe HMAC of ``data``."""
        return _b64(hmac.digest(self.key(), data, "sha256"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def _keys(request: Request) -> SessionKeys:
    found: SessionKeys = request.app.state.ui_keys
    return found


def logins_of(services: Services) -> Logins | None:
    """The registry's logins (users, throttle, policy), or ``None`` without authentication."""
    logins = getattr(services.authorizer, "logins", None)
    return logins if isinstance(logins, Logins) else None


def encode_session(keys: SessionKeys, session: Session) -> str:
    """The cookie value of ``session``: payload and signature."""
    payload = _b64(json.dumps({"n": session.nonce, "u": session.user, "s": session.stamp,
                               "t": session.issued}, separators=(",", ":")).encode())
    return f"{payload}.{keys.sign(payload.encode())}"


def decode_session(keys: SessionKeys, value: str, now: float | None = None) -> Session | None:
    """The session of a cookie value; ``None`` if it is malformed, forged or expired."""
    payload, sep, signature = value.partition(".")
    if not sep or len(value) > 4096:
        return None
    if not hmac.compare_digest(signature, keys.sign(payload.encode())):
        return None
    try:
        doc = json.loads(_unb64(payload))
        session = Session(str(doc["n"]), doc["u"] if doc["u"] is None else str(doc["u"]),
                          str(doc["s"]), float(doc["t"]))
    except (ValueError, KeyError, TypeError):
        return None
    now = time.time() if now is None else now
    if session.user is not None and not 0 <= now - session.issued < SESSION_SECONDS:
        return None
    return session


def _new_session(user: str | None = None, stamp: str = "") -> Session:
    return Session(_b64(os.urandom(18)), user, stamp, time.time())


def current_session(request: Request) -> Session:
    """The request's session; a new anonymous one (set with the response) if it has none."""
    found = getattr(request.state, _STATE_SESSION, None)
    if isinstance(found, Session):
        return found
    value = request.cookies.get(SESSION_COOKIE)
    session = decode_session(_keys(request), value) if value else None
    if session is None:
        session = _new_session()
        setattr(request.state, _STATE_SET, session)
    setattr(request.state, _STATE_SESSION, session)
    return session


def viewer(request: Request) -> Viewer | None:
    """The logged-in viewer of ``request``; ``None`` for an anonymous visitor."""
    if hasattr(request.state, _STATE_VIEWER):
        found: Viewer | None = getattr(request.state, _STATE_VIEWER)
        return found
    services = _services(request)
    address = client_address(request)
    result: Viewer | None = None
    if isinstance(services.authorizer, AllowAll):
        result = Viewer("anonymous", True, ANONYMOUS_PRINCIPAL, address, open=True)
    else:
        logins = logins_of(services)
        session = current_session(request)
        if logins is not None and session.user is not None:
            if logins.stamp(session.user) == session.stamp and session.stamp:
                who = logins.principal(session.user)
                result = Viewer(session.user, logins.policy.is_admin(who), who, address)
            else:
                end_session(request)
    setattr(request.state, _STATE_VIEWER, result)
    return result


def principal_of(request: Request) -> Principal:
    """The principal the access policy judges for ``request`` (anonymous if logged out)."""
    found = viewer(request)
    return found.principal if found is not None else ANONYMOUS_PRINCIPAL


def csrf_token(request: Request) -> str:
    """The CSRF token every form of this session carries (field :data:`CSRF_FIELD`)."""
    return _keys(request).sign(b"csrf:" + current_session(request).nonce.encode())


def require_csrf(request: Request, form: Mapping[str, Any]) -> None:
    """Refuse (UIForbidden, a 403 page) a form without this session's CSRF token, or one
    that a browser says came from another site."""
    origin = request.headers.get("origin")
    # The host only: a proxy that ends TLS in front of the registry changes the scheme.
    if origin and origin.partition("://")[2] != request.headers.get("host", ""):
        raise UIForbidden(f"refused: the form was sent from another site ({origin[:100]})")
    sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or request.cookies.get(SESSION_COOKIE) is None or \
            not hmac.compare_digest(sent, csrf_token(request)):
        raise UIForbidden("refused: the form's CSRF token is missing or stale; reload the "
                          "page and try again")


def start_session(request: Request, principal: Principal) -> None:
    """Log ``principal`` in: a new session (new nonce) is set with the response."""
    services = _services(request)
    logins = logins_of(services)
    stamp = logins.stamp(principal.subject or "") if logins is not None else ""
    session = _new_session(principal.subject, stamp)
    setattr(request.state, _STATE_SESSION, session)
    setattr(request.state, _STATE_SET, session)
    if hasattr(request.state, _STATE_VIEWER):
        delattr(request.state, _STATE_VIEWER)


def end_session(request: Request) -> None:
    """Log out: a new anonymous session replaces the current one with the response."""
    session = _new_session()
    setattr(request.state, _STATE_SESSION, session)
    setattr(request.state, _STATE_SET, session)
    setattr(request.state, _STATE_VIEWER, None)


def attach_session(request: Request, response: Response) -> Response:
    """Set the session cookie on ``response`` if this request made a new session."""
    session = getattr(request.state, _STATE_SET, None)
    if isinstance(session, Session):
        secure = _services(request).settings.tls_enabled or request.url.scheme == "https"
        response.set_cookie(SESSION_COOKIE, encode_session(_keys(request), session),
                            max_age=SESSION_SECONDS, path="/", httponly=True, secure=secure,
                            samesite="lax")
    return response

