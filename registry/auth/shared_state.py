"""Where the authentication state lives: under ``root/auth`` (the users file and the token
signing key, one registry host), or in the PostgreSQL metadata database when
``metadata_url`` is set, so that every replica knows the same users and issues and accepts
the same tokens.

In PostgreSQL the users are rows of ``registry_users`` (name, password hash, groups), read
at most once a second by each process (a change reaches every replica within a second),
edited in a transaction that holds the table's lock; an htpasswd file still adds users
where the table names none. The signing key is the row ``token`` of ``signing_keys``, made
on first use: replicas racing to make it all end up with the one that landed first.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from registry.auth.tokens import SigningKey, TokenError, key_id
from registry.auth.users import User, UserStore, _read_htpasswd, _signature
from registry.config import Settings
from registry.metadata.postgres import PostgresMetadataStore

AUTH_DIR = "auth"
KEY_NAME = "token"
USERS_CACHE_SECONDS = 1.0
_stores_guard = threading.Lock()


@functools.cache
def _store(url: str, migrate: bool) -> PostgresMetadataStore:
    return PostgresMetadataStore(url, migrate=migrate, min_size=1, max_size=4,
                                 check_connections=True)


def shared_store(settings: Settings, *, migrate: bool = False) -> PostgresMetadataStore:
    """The process's small connection pool to ``settings.metadata_url`` for auth state."""
    with _stores_guard:
        return _store(settings.metadata_url, migrate)


class PostgresUserStore(UserStore):
    """The users of the ``registry_users`` table (plus an optional htpasswd file); the same
    interface as :class:`~registry.auth.users.UserStore`."""

    def __init__(self, store: PostgresMetadataStore, directory: Path,
                 htpasswd: Path | None = None) -> None:
        super().__init__(directory, htpasswd)
        self.store = store
        self.location = f"metadata_url {store.url}"
        self._loaded_at = float("-inf")

    def _current(self) -> dict[str, User]:
        now = time.monotonic()
        with self._lock:
            if now - self._loaded_at < USERS_CACHE_SECONDS:
                return self._users
        with self.store.connection() as conn:
            rows = conn.execute("SELECT name, password_hash, groups FROM registry_users "
                                "ORDER BY name").fetchall()
        seen = (tuple((n, h, tuple(g)) for n, h, g in rows), _signature(self.htpasswd))
        with self._lock:
            if seen != self._seen:
                users = _read_htpasswd(self.htpasswd) if seen[1] is not None else {}
                users.update({n: User(n, h, tuple(g)) for n, h, g in rows})
                self._users, self._seen = users, seen
                self.generation += 1
            self._loaded_at = now
            return self._users

    @contextlib.contextmanager
    def _editing(self) -> Iterator[dict[str, Any]]:
        with self.store.connection() as conn, conn.transaction():
            conn.execute("LOCK TABLE registry_users IN EXCLUSIVE MODE")
            rows = conn.execute(
                "SELECT name, password_hash, groups FROM registry_users").fetchall()
            before = {n: {"password": h, "groups": list(g)} for n, h, g in rows}
            doc: dict[str, Any] = {"version": 1, "users": {
                n: dict(entry) for n, entry in before.items()}}
            yield doc
            after: dict[str, dict[str, Any]] = doc["users"]
            for name in before.keys() - after.keys():
                conn.execute("DELETE FROM registry_users WHERE name = %s", (name,))
            for name, entry in after.items():
                if before.get(name) != entry:
                    conn.execute(
                        "INSERT INTO registry_users (name, password_hash, groups) "
                        "VALUES (%s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                        "password_hash = excluded.password_hash, groups = excluded.groups, "
                        "updated_at = clock_timestamp()",
                        (name, entry["password"], list(entry["groups"])))
        self._loaded_at = float("-inf")


def open_user_store(settings: Settings, *, migrate: bool = False) -> UserStore:
    """The users of ``settings``: ``root/auth/users.json``, or the PostgreSQL table with
    ``metadata_url`` (``migrate``: create the schema first if needed)."""
    directory = settings.root / AUTH_DIR
    if not settings.metadata_url:
        return UserStore(directory, settings.htpasswd)
    return PostgresUserStore(shared_store(settings, migrate=migrate), directory,
                             settings.htpasswd)


def load_signing_key(settings: Settings) -> SigningKey:
    """The token signing key of ``settings``: ``root/auth``'s file, or the one row of the
    PostgreSQL database every replica shares (made on first use)."""
    if not settings.metadata_url:
        return SigningKey.load_or_create(settings.root / AUTH_DIR)
    store = shared_store(settings)
    fresh = SigningKey.generate().private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    with store.connection() as conn:
        conn.execute("INSERT INTO signing_keys (name, pem) VALUES (%s, %s) "
                     "ON CONFLICT (name) DO NOTHING", (KEY_NAME, fresh))
        row = conn.execute("SELECT pem FROM signing_keys WHERE name = %s",
                           (KEY_NAME,)).fetchone()
    where = f"signing key {KEY_NAME!r} in metadata_url {store.url}"
    try:
        private = serialization.load_pem_private_key(row[0].encode(), password=None)
    except (TypeError, ValueError) as exc:
        raise TokenError(f"token {where} cannot be read: {exc}") from None
    if not isinstance(private, ec.EllipticCurvePrivateKey) or \
            not isinstance(private.curve, ec.SECP256R1):
        raise TokenError(f"token {where} is not a P-256 EC key")
    return SigningKey(private, key_id(private.public_key()))
