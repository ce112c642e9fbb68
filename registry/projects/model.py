"""What a project is: its record, its members and their roles, quota sizes, the checks of
names and the errors of the package.

A project is the first path segment of a repository (``team/app`` belongs to ``team``).
Roles follow Harbor's meanings:

=============  =====================  ==================================================
role           repository actions     also manages
=============  =====================  ==================================================
guest          pull
developer      pull, push
maintainer     pull, push, delete     tag immutability and retention rules
admin          pull, push, delete     the above, members and robot accounts
=============  =====================  ==================================================

System admins (the config's ``admins``) stand above every project role.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.auth.rules import DELETE, PULL, PUSH

GUEST, DEVELOPER, MAINTAINER, ADMIN = "guest", "developer", "maintainer", "admin"
ROLES: tuple[str, ...] = (GUEST, DEVELOPER, MAINTAINER, ADMIN)
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    GUEST: frozenset({PULL}),
    DEVELOPER: frozenset({PULL, PUSH}),
    MAINTAINER: frozenset({PULL, PUSH, DELETE}),
    ADMIN: frozenset({PULL, PUSH, DELETE}),
}
ROLE_RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES)}
MAX_PROJECT_NAME = 255
_PROJECT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_MEMBER = re.compile(r"@?[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")
_UNITS = {
    "": 1, "b": 1,
    "k": 1 << 10, "kib": 1 << 10, "kb": 10**3,
    "m": 1 << 20, "mib": 1 << 20, "mb": 10**6,
    "g": 1 << 30, "gib": 1 << 30, "gb": 10**9,
    "t": 1 << 40, "tib": 1 << 40, "tb": 10**12,
}
UNLIMITED = ("none", "unlimited", "-1")


class ProjectError(Exception):
    """A project operation that cannot be done; the message is one line naming the
    argument."""


class ProjectNotFound(ProjectError):
    """The named project (or member) does not exist."""


class ProjectExists(ProjectError):
    """A project of that name exists already."""


class ProjectInvalid(ProjectError):
    """A malformed argument: a name, a role, a size."""


class ProjectNotEmpty(ProjectError):
    """The project still has repositories."""


class ProjectDenied(ProjectError):
    """The caller may not do this to the project."""


@dataclass(frozen=True)
class Member:
    """A user (``name``) or a group (``@name``) and its role in a project."""

    project: str
    name: str
    role: str

    @property
    def is_group(self) -> bool:
        """Whether the member is a group (``@name``)."""
        return self.name.startswith("@")


@dataclass(frozen=True)
class Project:
    """A project record: ``quota`` in bytes (``None``: no limit)."""

    name: str
    public: bool = False
    quota: int | None = None
    created_at: float = 0.0


@dataclass(frozen=True)
class Usage:
    """What a project's repositories hold: ``bytes`` counts each digest once."""

    repositories: int
    bytes: int


def check_project_name(name: str, what: str = "project") -> str:
    """A project name (one repository path component); ProjectInvalid otherwise."""
    if not isinstance(name, str) or not name:
        raise ProjectInvalid(f"{what}: a project name is required")
    if len(name) > MAX_PROJECT_NAME or not _PROJECT.fullmatch(name):
        raise ProjectInvalid(
            f"{what} {name[:80]!r} is not a valid project name: lower-case letters and "
            "digits, separated by '.', '_', '__' or '-' (the first segment of a repository)")
    return name


def check_member_name(name: str) -> str:
    """A user name, or ``@group``; ProjectInvalid otherwise."""
    if not isinstance(name, str) or not _MEMBER.fullmatch(name):
        raise ProjectInvalid(f"member {str(name)[:80]!r} is not a user name or @group")
    return name


def check_role(role: str) -> str:
    """One of :data:`ROLES`; ProjectInvalid otherwise."""
    if role not in ROLES:
        raise ProjectInvalid(f"--role {str(role)[:40]!r} is not a role: use one of "
                             f"{', '.join(ROLES)}")
    return role


def parse_size(text: str | int | None, what: str = "--quota") -> int | None:
    """A size in bytes from ``10GiB``, ``500MB``, ``2G`` (K/M/G/T are binary), a plain
    number of bytes, or ``none``/``unlimited``/``-1`` for no limit (``None``)."""
    if text is None:
        return None
    if isinstance(text, bool):
        raise ProjectInvalid(f"{what} {text!r} is not a size")
    if isinstance(text, int):
        if text == -1:
            return None
        if text < 0:
            raise ProjectInvalid(f"{what} {text} is negative")
        return text
    if text.strip().lower() in UNLIMITED:
        return None
    match = _SIZE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ProjectInvalid(f"{what} {text[:40]!r} is not a size: use e.g. 500MiB, 10GiB, "
                             "2G, a number of bytes, or none")
    return int(float(match.group(1)) * _UNITS[unit])


def format_size(size: int | None) -> str:
    """``size`` in binary units for people (``unlimited`` for ``None``)."""
    if size is None:
        return "unlimited"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def project_of(repository: str) -> str | None:
    """The project of a repository: its first path segment (``None`` without a ``/``)."""
    head, sep, _ = repository.partition("/")
    return head if sep else None
