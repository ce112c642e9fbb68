"""The registry's users: a JSON file in the data directory (``registry user add``), and
optionally an htpasswd file of bcrypt hashes as CNCF distribution reads it.

Passwords are stored as ``scrypt$<log2 n>$<r>$<p>$<salt>$<hash>`` (base64, a random
16-byte salt per user), so the parameters travel with the hash. Checking a password always
costs one slow hash, also for an unknown user, and compares in constant time. The users file
is rewritten atomically (temporary file, fsync, rename) under an exclusive lock, and re-read
by a running server when it changes.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt

from layerstore.fsutil import atomic_write

USERS_FILE = "users.json"
SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 14, 8, 1, 32
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_MAX_PASSWORD = 1024
log = logging.getLogger("registry.auth")


class UserError(ValueError):
    """A user name, password or users file is not acceptable; the message says why."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _scrypt(password: bytes, salt: bytes, log2_n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=1 << log2_n, r=r, p=p, dklen=length,
                          maxmem=256 * 1024 * 1024)


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password`` with its parameters."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password.encode(), salt, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN)
    return f"scrypt${SCRYPT_LOG2_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


@functools.cache
def _dummy_hash() -> str:
    """A hash to check unknown users' passwords against, so they cost the same."""
    return hash_password(secrets.token_hex(16))


def verify_password(stored: str, password: str) -> bool:
    """Whether ``password`` matches ``stored`` (scrypt as written by :func:`hash_password`,
    or bcrypt ``$2a$``/``$2b$``/``$2y$``); a malformed hash matches nothing."""
    secret = password.encode()[:_MAX_PASSWORD]
    if stored.startswith(("$2a$", "$2b$", "$2y$")):
        try:
            return bcrypt.checkpw(secret, stored.encode())
        except ValueError:
            return False
    try:
        scheme, log2_n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest, validate=True)
        if scheme != "scrypt" or not (1 <= int(log2_n) <= 20 and 1 <= int(r) <= 32
                                      and 1 <= int(p) <= 16 and 16 <= len(expected) <= 64):
            return False
        actual = _scrypt(secret, base64.b64decode(salt, validate=True), int(log2_n), int(r),
                         int(p), len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def check_name(name: str) -> str:
    """``name`` if it is a valid user name (letters, digits, ``._@-``; no ``:``)."""
    if not NAME.fullmatch(name):
        raise UserError(f"user name {name[:80]!r} is not valid: use 1-64 letters, digits, "
                        "'.', '_', '@' or '-', starting with a letter or digit")
    return name


@dataclass(frozen=True)
class User:
    """A user: name, password hash, groups, and where it was found."""

    name: str
    password_hash: str
    groups: tuple[str, ...] = ()
    source: str = "users"

    @property
    def stamp(self) -> str:
        """A short fingerprint of the password hash: it changes with the password."""
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]


def _read_users(path: Path) -> dict[str, User]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UserError(f"users file {str(path)!r} cannot be read: {exc}") from None
    entries = doc.get("users") if isinstance(doc, dict) else None
    if not isinstance(entries, dict):
        raise UserError(f"users file {str(path)!r} has no 'users' table")
    users = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("password"), str):
            raise UserError(f"users file {str(path)!r}: entry {name!r} is malformed")
        groups = entry.get("groups", [])
        users[name] = User(name, entry["password"], tuple(str(g) for g in groups))
    return users


def _read_htpasswd(path: Path) -> dict[str, User]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise UserError(f"htpasswd file {str(path)!r} cannot be read: {exc}") from None
    users = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, stored = line.partition(":")
        if not sep or not stored.startswith(("$2a$", "$2b$", "$2y$")):
            log.warning("htpasswd %s line %d: not name:bcrypt-hash; ignored", path, number)
            continue
        users[name] = User(name, stored, (), "htpasswd")
    return users


def _signature(path: Path | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class UserStore:
    """The users of ``directory/users.json`` and of an optional htpasswd file (the users
    file wins where both name a user). Safe to use from several threads."""

    def __init__(self, directory: Path, htpasswd: Path | None = None) -> None:
        self.path = directory / USERS_FILE
        self.htpasswd = htpasswd
        self._lock = threading.Lock()
        self._seen: tuple[Any, Any] | None = None
        self._users: dict[str, User] = {}
        self.generation = 0

    def _current(self) -> dict[str, User]:
        seen = (_signature(self.path), _signature(self.htpasswd))
        with self._lock:
            if seen != self._seen:
                users = (_read_htpasswd(self.htpasswd)
                         if self.htpasswd is not None and seen[1] is not None else {})
                users.update(_read_users(self.path))
                self._users, self._seen = users, seen
                self.generation += 1
            return self._users

    def refresh(self) -> int:
        """Re-read the files if they changed; returns a number that changes when they do."""
        self._current()
        return self.generation

    def get(self, name: str) -> User | None:
        """The user called ``name``, if any."""
        return self._current().get(name)

    def users(self) -> list[User]:
        """Every user, sorted by name."""
        return sorted(self._current().values(), key=lambda u: u.name)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs; ``None`` otherwise. Costs one slow hash
        whether or not the user exists (blocking: call it from a worker thread)."""
        user = self._current().get(name)
        ok = verify_password(user.password_hash if user else _dummy_hash(), password)
        return user if ok and user is not None else None

    @contextlib.contextmanager
    def _editing(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path.with_name(USERS_FILE + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = _read_users(self.path)
            doc = {"version": 1, "users": {
                u.name: {"password": u.password_hash, "groups": list(u.groups)}
                for u in current.values()}}
            yield doc
            text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
            atomic_write(self.path, text.encode(), 0o600)

    def add(self, name: str, password: str, groups: Sequence[str] = (), *,
            replace: bool = False) -> User:
        """Add a user (or, with ``replace``, set an existing one's password and groups)."""
        check_name(name)
        for group in groups:
            if not NAME.fullmatch(group):
                raise UserError(f"group name {group[:80]!r} is not valid")
        if not password:
            raise UserError("the password must not be empty")
        if len(password.encode()) > _MAX_PASSWORD:
            raise UserError(f"the password is longer than {_MAX_PASSWORD} bytes")
        stored = hash_password(password)
        with self._editing() as doc:
            if name in doc["users"] and not replace:
                raise UserError(f"user {name!r} exists already (use --replace to change it)")
            doc["users"][name] = {"password": stored, "groups": sorted(set(groups))}
        return User(name, stored, tuple(sorted(set(groups))))

    def remove(self, name: str) -> bool:
        """Remove a user from the users file; ``False`` if it was not there."""
        with self._editing() as doc:
            return doc["users"].pop(name, None) is not None
