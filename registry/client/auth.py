"""Registry authentication: ``WWW-Authenticate`` challenges, scopes and bearer tokens.

A registry answers 401 with ``Bearer realm="…",service="…",scope="…"`` (the Docker token
specification) or ``Basic realm="…"``. For a bearer challenge the client asks the realm for
a token covering the scopes it needs (``GET realm?service=…&scope=…`` with basic
credentials, or anonymously; a ``POST`` with ``grant_type=refresh_token`` for an identity
token) and keeps it until ``expires_in`` (60 s when absent) runs out.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

#: Actions in the order scope strings list them.
_ACTION_ORDER = {"pull": 0, "push": 1, "delete": 2}
DEFAULT_TOKEN_SECONDS = 60
_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')
_SCHEME_RE = re.compile(r"\s*([A-Za-z][A-Za-z0-9_-]*)(?=\s|$)")


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: its scheme (lowercase) and
    parameters."""

    scheme: str
    params: Mapping[str, str]

    @property
    def realm(self) -> str:
        """The token service URL (bearer) or the protection space (basic)."""
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        """The ``service`` parameter of a bearer challenge."""
        return self.params.get("service", "")

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes a bearer challenge asks for (space-separated in the header)."""
        return tuple(self.params.get("scope", "").split())

    @property
    def error(self) -> str:
        """``invalid_token``, ``insufficient_scope`` or empty."""
        return self.params.get("error", "")


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """Every challenge in the ``WWW-Authenticate`` header values (RFC 7235 syntax, with
    quoted-string parameters)."""
    out: list[Challenge] = []
    for value in values:
        pos = 0
        while pos < len(value):
            scheme_match = _SCHEME_RE.match(value, pos)
            if scheme_match is None:
                break
            scheme = scheme_match.group(1).lower()
            pos = scheme_match.end()
            params: dict[str, str] = {}
            while True:
                param = _PARAM_RE.match(value, pos)
                if param is None or not param.group(0).strip():
                    break
                raw = param.group(2)
                if raw.startswith('"'):
                    raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
                params[param.group(1).lower()] = raw
                pos = param.end()
            out.append(Challenge(scheme, params))
            while pos < len(value) and value[pos] in ", ":
                pos += 1
    return out


def repository_scope(repository: str, *actions: str) -> str:
    """``repository:<name>:<actions>``."""
    return f"repository:{repository}:{','.join(actions)}"


def merge_scopes(*groups: Iterable[str]) -> tuple[str, ...]:
    """Scopes with the actions of the same resource united, in a stable order."""
    merged: dict[tuple[str, str], list[str]] = {}
    for group in groups:
        for scope in group:
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            resource = (parts[0], ":".join(parts[1:-1]))
            actions = merged.setdefault(resource, [])
            actions.extend(a for a in parts[-1].split(",") if a and a not in actions)
    out = []
    for (type_, name), actions in sorted(merged.items()):
        ordered = sorted(actions, key=lambda a: (_ACTION_ORDER.get(a, 9), a))
        out.append(f"{type_}:{name}:{','.join(ordered)}")
    return tuple(out)


@dataclass(frozen=True)
class Token:
    """A bearer token and the monotonic time after which it is not used any more."""

    value: str
    expires_at: float

    def fresh(self, now: float | None = None) -> bool:
        """Whether the token may still be sent."""
        return (time.monotonic() if now is None else now) < self.expires_at


def token_lifetime(expires_in: object) -> float:
    """How long to use a token the server says lives ``expires_in`` seconds: a little less,
    so that it does not expire on the way (the default is 60 s)."""
    seconds = expires_in if isinstance(expires_in, int | float) and not isinstance(
        expires_in, bool) and expires_in > 0 else DEFAULT_TOKEN_SECONDS
    return float(seconds) - min(10.0, float(seconds) / 4)


TokenKey = tuple[str, str, tuple[str, ...]]


class TokenCache:
    """Tokens by (realm, service, scopes); safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[TokenKey, Token] = {}

    @staticmethod
    def key(challenge: Challenge, scopes: Sequence[str]) -> TokenKey:
        """The cache key of a token for ``scopes`` under ``challenge``."""
        return (challenge.realm, challenge.service, tuple(scopes))

    def get(self, key: TokenKey) -> Token | None:
        """A fresh token for ``key``, if any."""
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and not token.fresh():
                del self._tokens[key]
                return None
            return token

    def put(self, key: TokenKey, token: Token) -> None:
        """Remember a token."""
        with self._lock:
            self._tokens[key] = token

    def drop(self, key: TokenKey, value: str | None = None) -> None:
        """Forget the token of ``key`` (only if it is still ``value`` when given)."""
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and (value is None or token.value == value):
                del self._tokens[key]


__all__ = ["Challenge", "Token", "TokenCache", "merge_scopes", "parse_challenges",
           "repository_scope", "token_lifetime"]
