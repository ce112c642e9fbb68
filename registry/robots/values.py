"""The values of robot accounts and users' CLI secrets, how their names, actions and
expiry are checked, and how secrets are made and hashed.

A robot account is named ``robot$<project>+<name>`` (Harbor's form for project robots).
Its secret, and a user's CLI secret, is 32 random bytes shown once as URL-safe base64
(43 characters) and stored as ``sha256$<hex>``: a single SHA-256 suffices for a secret
with 256 bits of entropy (there is no dictionary to try), and keeps a login as cheap as
an indexed lookup, where the users' scrypt costs tens of milliseconds per check. A secret
someone chooses (``--secret-stdin``) may be guessable, so it is stored with the users'
salted scrypt instead (:func:`registry.auth.users.hash_password`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from registry.auth.users import hash_password, verify_password

ROBOT_PREFIX = "robot$"
ACTIONS: tuple[str, ...] = ("pull", "push", "delete")
SECRET_BYTES = 32
MIN_CHOSEN_SECRET = 16
MAX_SECRET = 1024
MAX_EXPIRES_DAYS = 36500
DAY = 86400.0
_SHORT = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_PROJECT = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,63}")


class RobotError(ValueError):
    """A robot account or CLI secret request is not acceptable, or names something that
    does not exist; the message names the argument and the problem."""


class RobotNotFound(RobotError):
    """The robot account or CLI secret named does not exist."""


class RobotExists(RobotError):
    """A robot account or CLI secret of that name exists already."""


def robot_name(project: str, name: str) -> str:
    """The full account name of robot ``name`` of ``project``: ``robot$project+name``."""
    return f"{ROBOT_PREFIX}{project}+{name}"


def check_project(project: str) -> str:
    """``project`` if it can be the first segment of a repository name."""
    if not _PROJECT.fullmatch(project) or len(project) > 128:
        raise RobotError(f"--project {project[:80]!r} is not a valid project name: use "
                         "lowercase letters and digits, separated by '.', '_' or '-'")
    return project


def check_short_name(name: str) -> str:
    """``name`` if it is valid as a robot's own name (the part after ``+``)."""
    if not _SHORT.fullmatch(name):
        raise RobotError(f"NAME {name[:80]!r} is not a valid robot name: use 1-64 lowercase "
                         "letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def check_label(label: str) -> str:
    """``label`` if it is valid as a CLI secret's label."""
    if not _LABEL.fullmatch(label):
        raise RobotError(f"--name {label[:80]!r} is not a valid label: use 1-64 letters, "
                         "digits, spaces, '.', '_' or '-'")
    return label


def split_robot_name(full: str) -> tuple[str, str]:
    """``(project, name)`` of ``robot$project+name``; RobotError if it is not that form."""
    rest = full.removeprefix(ROBOT_PREFIX)
    project, sep, name = rest.partition("+")
    if rest == full or not sep:
        raise RobotError(f"robot {full[:80]!r} is not a robot account name "
                         f"(robot$PROJECT+NAME)")
    return check_project(project), check_short_name(name)


def parse_actions(text: str) -> tuple[str, ...]:
    """The actions of ``--actions pull,push`` in a stable order; RobotError naming the
    flag for an empty list or an unknown action."""
    items = [a.strip() for a in text.split(",")]
    if not text.strip() or any(not a for a in items):
        raise RobotError(f"--actions {text[:80]!r} is malformed: give a comma-separated "
                         f"list of {', '.join(ACTIONS)}")
    unknown = [a for a in items if a not in ACTIONS]
    if unknown:
        raise RobotError(f"--actions: unknown action {unknown[0][:40]!r} (known: "
                         f"{', '.join(ACTIONS)})")
    return tuple(a for a in ACTIONS if a in items)


def parse_expires(text: str | int | None, now: float | None = None) -> float | None:
    """The expiry time of ``--expires DAYS`` (``None``: never); RobotError unless DAYS is a
    positive integer."""
    if text is None:
        return None
    try:
        days = int(str(text).strip())
    except ValueError:
        days = 0
    if days <= 0 or str(text).strip().lstrip("+") != str(days) or days > MAX_EXPIRES_DAYS:
        raise RobotError(f"--expires {str(text)[:40]!r} is not a positive whole number of "
                         f"days (1-{MAX_EXPIRES_DAYS})")
    return (time.time() if now is None else now) + days * DAY


def new_secret() -> str:
    """A fresh random secret (32 bytes, URL-safe base64 without padding)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")


def secret_digest(secret: str) -> str:
    """The stored form of a generated (high-entropy) secret: ``sha256$<hex>``."""
    return "sha256$" + hashlib.sha256(secret.encode()[:MAX_SECRET]).hexdigest()


def check_chosen_secret(secret: str) -> str:
    """A secret given on standard input, if it is long enough to be one."""
    if not secret:
        raise RobotError("--secret-stdin: the secret on standard input is empty")
    if len(secret) < MIN_CHOSEN_SECRET:
        raise RobotError(f"--secret-stdin: the secret must be at least {MIN_CHOSEN_SECRET} "
                         "characters long")
    if len(secret.encode()) > MAX_SECRET:
        raise RobotError(f"--secret-stdin: the secret is longer than {MAX_SECRET} bytes")
    return secret


def hash_secret(secret: str, *, chosen: bool) -> str:
    """The stored form of ``secret``: SHA-256 for a generated one, scrypt for a chosen one
    (module docstring)."""
    return hash_password(secret) if chosen else secret_digest(secret)


def verify_secret(stored: str, secret: str) -> bool:
    """Whether ``secret`` matches ``stored`` (either form); constant-time comparison."""
    if stored.startswith("sha256$"):
        return hmac.compare_digest(stored.encode(), secret_digest(secret).encode())
    return verify_password(stored, secret)


def stamp_of(stored: str) -> str:
    """A short fingerprint of a stored secret: it changes when the secret is rotated."""
    return hashlib.sha256(stored.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Robot:
    """A robot account: its project, actions, state and secret hash."""

    project: str
    name: str
    actions: tuple[str, ...]
    secret_hash: str
    created_at: float
    expires_at: float | None = None
    disabled: bool = False
    description: str = ""

    @property
    def full_name(self) -> str:
        """The account name clients log in with: ``robot$project+name``."""
        return robot_name(self.project, self.name)

    def expired(self, now: float | None = None) -> bool:
        """Whether the account's time has run out."""
        return self.expires_at is not None and (time.time() if now is None else now) \
            >= self.expires_at

    @property
    def stamp(self) -> str:
        """A fingerprint of the secret (refresh tokens carry it; rotating revokes them)."""
        return stamp_of(self.secret_hash)

    def state(self, now: float | None = None) -> str:
        """``enabled``, ``disabled`` or ``expired``."""
        if self.disabled:
            return "disabled"
        return "expired" if self.expired(now) else "enabled"

    def to_json(self) -> dict[str, object]:
        """The account as ``robot list --json`` and the API show it (no secret)."""
        return {"name": self.full_name, "project": self.project, "actions": list(self.actions),
                "disabled": self.disabled, "state": self.state(),
                "created_at": _iso(self.created_at),
                "expires_at": None if self.expires_at is None else _iso(self.expires_at),
                "description": self.description}


@dataclass(frozen=True)
class UserSecret:
    """One CLI secret of a user: an id, a label, its hash."""

    id: str
    user: str
    label: str
    secret_hash: str
    created_at: float

    @property
    def stamp(self) -> str:
        """What a refresh token obtained with this secret carries: revoking it revokes them."""
        return f"secret:{self.id}"

    def to_json(self) -> dict[str, object]:
        """The secret's record (never the secret)."""
        return {"id": self.id, "user": self.user, "name": self.label,
                "created_at": _iso(self.created_at)}


def _iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
