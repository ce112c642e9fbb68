"""Bearer tokens of the Docker registry token specification: the signing key, issuing and
verifying.

Access tokens are JWTs signed with ES256 by a P-256 key kept in the data directory; the
header names the key (``kid``, in the libtrust fingerprint format distribution uses) and the
claims are ``iss sub aud exp nbf iat jti access``, where ``access`` lists
``{type, name, actions}``. Refresh tokens are JWTs of the same key with a different
audience (``<service>#refresh``), so one can never stand in for the other, and a ``stamp``
of the user's password hash, so changing the password or removing the user revokes them.

Verification pins the algorithm to ES256 (no ``none``, no HMAC keyed with the public key),
checks ``kid``, signature, issuer, audience and the time window, and keeps the claims of
recently verified tokens in a small LRU keyed by the token string until they expire, so a
client that sends the same token with every request pays for the signature once.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from layerstore.fsutil import atomic_write

ALGORITHM = "ES256"
REFRESH_SUFFIX = "#refresh"
KEY_FILE = "token-signing-key.pem"
_REQUIRED = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"]


class TokenError(Exception):
    """A token that must not be honoured; the message says why (never the token)."""


@dataclass(frozen=True, slots=True)
class Access:
    """One entry of the ``access`` claim: ``actions`` granted on ``type:name``."""

    type: str
    name: str
    actions: tuple[str, ...]

    def to_claim(self) -> dict[str, Any]:
        """The claim's JSON object."""
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


@dataclass(frozen=True)
class Claims:
    """The verified claims of an access token; ``subject`` is ``""`` for an anonymous one."""

    subject: str
    issuer: str
    audience: str
    expires: int
    not_before: int
    issued_at: int
    jwt_id: str
    access: tuple[Access, ...]
    _grants: Mapping[tuple[str, str], frozenset[str]] = field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        grants: dict[tuple[str, str], set[str]] = {}
        for entry in self.access:
            grants.setdefault((entry.type, entry.name), set()).update(entry.actions)
        object.__setattr__(self, "_grants", {k: frozenset(v) for k, v in grants.items()})

    def actions(self, type_: str, name: str) -> frozenset[str]:
        """The actions granted on ``type_:name``."""
        return self._grants.get((type_, name), frozenset())

    def allows(self, type_: str, name: str, wanted: Iterable[str]) -> bool:
        """Whether every action of ``wanted`` is granted on ``type_:name``."""
        granted = self._grants.get((type_, name))
        return granted is not None and all(a in granted for a in wanted)


@dataclass(frozen=True)
class Issued:
    """A freshly signed token and its claims."""

    token: str
    claims: Claims


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The libtrust fingerprint of a public key: base32 of the first 240 bits of the
    SHA-256 of its DER SubjectPublicKeyInfo, in twelve groups of four."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(text[i:i + 4] for i in range(0, 48, 4))


@dataclass(frozen=True)
class SigningKey:
    """The P-256 key tokens are signed with, and its ``kid``."""

    private: ec.EllipticCurvePrivateKey
    kid: str

    @property
    def public(self) -> ec.EllipticCurvePublicKey:
        """The key that verifies."""
        return self.private.public_key()

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random key (not stored)."""
        private = ec.generate_private_key(ec.SECP256R1())
        return cls(private, key_id(private.public_key()))

    @classmethod
    def load_or_create(cls, directory: Path) -> SigningKey:
        """The key kept in ``directory``, made (mode 0600, written atomically) on first use.
        Processes that race to make it all end up with the one that landed first."""
        path = directory / KEY_FILE
        if not path.exists():
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            pem = cls.generate().private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption())
            atomic_write(path, pem, 0o600, replace=False)
        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise TokenError(f"token signing key {str(path)!r} cannot be read: {exc}") from None
        if not isinstance(private, ec.EllipticCurvePrivateKey) or \
                not isinstance(private.curve, ec.SECP256R1):
            raise TokenError(f"token signing key {str(path)!r} is not a P-256 EC key")
        return cls(private, key_id(private.public_key()))


class TokenIssuer:
    """Signs access and refresh tokens for one service."""

    def __init__(self, key: SigningKey, *, issuer: str, service: str, ttl: int,
                 refresh_ttl: int) -> None:
        self.key = key
        self.issuer = issuer
        self.service = service
        self.ttl = ttl
        self.refresh_ttl = refresh_ttl
        self._headers = {"kid": key.kid, "typ": "JWT"}

    def access_token(self, subject: str, access: Sequence[Access],
                     now: float | None = None) -> Issued:
        """A token granting ``access`` to ``subject`` (``""``: anonymous) for ``ttl`` s."""
        issued_at = int(time.time() if now is None else now)
        claims = Claims(subject=subject, issuer=self.issuer, audience=self.service,
                        expires=issued_at + self.ttl, not_before=issued_at,
                        issued_at=issued_at, jwt_id=secrets.token_urlsafe(16),
                        access=tuple(access))
        payload = {
            "iss": claims.issuer, "sub": claims.subject, "aud": claims.audience,
            "exp": claims.expires, "nbf": claims.not_before, "iat": claims.issued_at,
            "jti": claims.jwt_id, "access": [a.to_claim() for a in claims.access],
        }
        token = jwt.encode(payload, self.key.private, algorithm=ALGORITHM,
                           headers=self._headers)
        return Issued(token, claims)

    def refresh_token(self, subject: str, stamp: str, now: float | None = None) -> str:
        """A long-lived token that buys new access tokens for ``subject`` while its
        password (``stamp``) stays the same."""
        issued_at = int(time.time() if now is None else now)
        payload = {
            "iss": self.issuer, "sub": subject, "aud": self.service + REFRESH_SUFFIX,
            "exp": issued_at + self.refresh_ttl, "nbf": issued_at, "iat": issued_at,
            "jti": secrets.token_urlsafe(16), "stamp": stamp,
        }
        return jwt.encode(payload, self.key.private, algorithm=ALGORITHM,
                          headers=self._headers)


def _access_claim(value: Any) -> tuple[Access, ...]:
    if not isinstance(value, list) or len(value) > 1000:
        raise TokenError("the access claim is not a list")
    out = []
    for entry in value:
        if not isinstance(entry, dict):
            raise TokenError("an access entry is not an object")
        type_, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if not isinstance(type_, str) or not isinstance(name, str) or \
                not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
            raise TokenError("an access entry lacks type, name or actions")
        out.append(Access(type_, name, tuple(actions)))
    return tuple(out)


class TokenVerifier:
    """Checks tokens signed by one key for one issuer and service (see the module
    docstring); ``leeway`` seconds of clock skew are tolerated."""

    def __init__(self, key: ec.EllipticCurvePublicKey, kid: str, *, issuer: str,
                 service: str, leeway: float = 1.0, cache_size: int = 4096) -> None:
        self._key = key
        self.kid = kid
        self.issuer = issuer
        self.service = service
        self.leeway = leeway
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[Claims, float, float]] = OrderedDict()

    def _decode(self, token: str, audience: str, now: float) -> dict[str, Any]:
        if len(token) > 16384:
            raise TokenError("token too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise TokenError(f"token algorithm {str(header.get('alg'))[:20]!r} is not "
                             f"{ALGORITHM}")
        if header.get("kid") != self.kid:
            raise TokenError("token signed by an unknown key")
        try:
            return jwt.decode(
                token, self._key, algorithms=[ALGORITHM], audience=audience,
                issuer=self.issuer, leeway=self.leeway,
                options={"require": _REQUIRED, "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("token not valid yet") from None
        except jwt.InvalidAudienceError:
            raise TokenError("token is for another service") from None
        except jwt.InvalidIssuerError:
            raise TokenError("token from another issuer") from None
        except jwt.InvalidSignatureError:
            raise TokenError("token signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {exc}") from None

    def verify(self, token: str, now: float | None = None) -> Claims:
        """The claims of a valid access token; TokenError otherwise."""
        now = time.time() if now is None else now
        hit = self._cache.get(token)
        if hit is not None:
            claims, valid_from, valid_until = hit
            if valid_from <= now < valid_until:
                self._cache.move_to_end(token)
                return claims
            if now >= valid_until:
                del self._cache[token]
        payload = self._decode(token, self.service, now)
        if not isinstance(payload.get("sub"), str) or not isinstance(payload.get("jti"), str):
            raise TokenError("token subject or id is not a string")
        claims = Claims(subject=payload["sub"], issuer=payload["iss"],
                        audience=self.service, expires=int(payload["exp"]),
                        not_before=int(payload["nbf"]), issued_at=int(payload["iat"]),
                        jwt_id=payload["jti"], access=_access_claim(payload.get("access")))
        self._cache[token] = (claims, claims.not_before - self.leeway,
                              claims.expires + self.leeway)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return claims

    def verify_refresh(self, token: str, now: float | None = None) -> tuple[str, str]:
        """The subject and password stamp of a valid refresh token; TokenError otherwise."""
        payload = self._decode(token, self.service + REFRESH_SUFFIX,
                               time.time() if now is None else now)
        subject, stamp = payload.get("sub"), payload.get("stamp")
        if not isinstance(subject, str) or not subject or not isinstance(stamp, str):
            raise TokenError("refresh token without a subject")
        return subject, stamp
