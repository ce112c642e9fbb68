"""Users and groups of an image: ``USER`` and ``--chown`` resolved against its files.

``/etc/passwd`` and ``/etc/group`` are read from the image's root filesystem through
:mod:`builder.fileops.rootpath`, so symlinks in the image cannot point the lookup at the
host's files.

:func:`resolve_user` follows BuildKit's ``oci.GetUser`` (a numeric ``uid:gid`` pair is taken
as is; anything else goes through runc's ``GetExecUser``). :func:`resolve_chown` follows
BuildKit's ``--chown`` handling: a numeric user without a group gets a group of the same
number, a user name gets its primary group from ``/etc/passwd``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from builder.errors import DockerfileError
from layerstore.rootpath import resolve

__all__ = ["GroupEntry", "PasswdEntry", "ResolvedUser", "read_group", "read_passwd",
           "resolve_chown", "resolve_user"]

MAX_ID = 2**31 - 1
_SIGNED = re.compile(r"[+-]?[0-9]+")
_UNSIGNED = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class ResolvedUser:
    """The numeric identity a process or a file gets."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()

    @property
    def process_groups(self) -> tuple[int, ...]:
        """The supplementary groups a process of this user runs with: the primary gid first
        (unless already listed), then the additional gids, as BuildKit and docker set them
        (``id`` prints ``groups=1000`` for a user whose only group is gid 1000)."""
        if self.gid in self.additional_gids:
            return self.additional_gids
        return (self.gid, *self.additional_gids)


@dataclass(frozen=True)
class PasswdEntry:
    """One line of ``/etc/passwd``."""

    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class GroupEntry:
    """One line of ``/etc/group``."""

    name: str
    gid: int
    members: tuple[str, ...]


def _atoi(text: str) -> int:
    """Go's ``strconv.Atoi`` as runc uses it while parsing: invalid numbers are 0."""
    if _SIGNED.fullmatch(text):
        value = int(text)
        if -(2**63) <= value < 2**63:
            return value
    return 0


def _numeric(text: str, pattern: re.Pattern[str] = _SIGNED) -> int | None:
    """``text`` as an integer if it is one (no spaces, no underscores), else None."""
    if pattern.fullmatch(text):
        value = int(text)
        if -(2**63) <= value < 2**63:
            return value
    return None


def _lines(rootfs: Path, path: str) -> Iterator[list[str]]:
    """The ``:``-separated fields of each non-blank line of ``path`` inside ``rootfs``."""
    try:
        host = resolve(rootfs, path)
        with open(host, encoding="utf-8", errors="surrogateescape") as handle:
            for line in handle:
                line = line.strip()
                if line:
                    yield line.split(":")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return
    except OSError as exc:
        raise DockerfileError(f"cannot read {path} of the image: {exc.strerror or exc}") from None


def _field(fields: list[str], index: int) -> str:
    return fields[index] if index < len(fields) else ""


def read_passwd(rootfs: Path) -> Iterator[PasswdEntry]:
    """The entries of the image's ``/etc/passwd`` (none when it does not exist)."""
    for fields in _lines(rootfs, "/etc/passwd"):
        yield PasswdEntry(name=fields[0], uid=_atoi(_field(fields, 2)),
                          gid=_atoi(_field(fields, 3)), home=_field(fields, 5))


def read_group(rootfs: Path) -> Iterator[GroupEntry]:
    """The entries of the image's ``/etc/group`` (none when it does not exist)."""
    for fields in _lines(rootfs, "/etc/group"):
        members = _field(fields, 3)
        yield GroupEntry(name=fields[0], gid=_atoi(_field(fields, 2)),
                         members=tuple(members.split(",")) if members else ())


def _check_range(value: int) -> int:
    if not 0 <= value <= MAX_ID:
        raise DockerfileError(f"uids and gids must be in range 0-{MAX_ID} (got {value})")
    return value


def _user_not_found(name: str) -> DockerfileError:
    return DockerfileError(f"unable to find user {name}: no matching entries in passwd file")


def _group_not_found(name: str) -> DockerfileError:
    return DockerfileError(f"unable to find group {name}: no matching entries in group file")


def _fast_id(text: str) -> int | None:
    """BuildKit's ``parseUID``: ``root`` or an unsigned 32-bit number."""
    if text == "root":
        return 0
    value = _numeric(text, _UNSIGNED)
    return value if value is not None and value < 2**32 else None


def resolve_user(rootfs: Path, user: str) -> ResolvedUser:
    """Resolve a ``USER`` value (``name``, ``uid``, ``name:group``, ``uid:gid`` …).

    ``""`` is root. A numeric ``uid:gid`` pair needs no lookup. Otherwise the user is
    looked up in the image's ``/etc/passwd`` by name (or by uid when numeric); a numeric
    uid without an entry gets gid 0. An explicit group is looked up in ``/etc/group``
    (a numeric gid without an entry is used as is); without one, the groups that list the
    user as a member become the additional gids. A name that is not found is an error.
    """
    if user == "":
        return ResolvedUser(0, 0)
    user_arg, sep, rest = user.partition(":")
    if sep:
        uid, gid = _fast_id(user_arg), _fast_id(rest)
        if uid is not None and gid is not None:
            return ResolvedUser(uid, gid)
    group_arg = rest.partition(":")[0]
    return _exec_user(rootfs, user_arg, group_arg)


def _exec_user(rootfs: Path, user_arg: str, group_arg: str) -> ResolvedUser:
    """runc's ``GetExecUser`` with defaults uid 0, gid 0."""
    uid_arg = _numeric(user_arg)
    gid_arg = _numeric(group_arg)
    uid, gid = 0, 0
    matched_name = ""
    for entry in read_passwd(rootfs):
        if (entry.uid == uid if user_arg == "" else
                entry.uid == uid_arg if uid_arg is not None else entry.name == user_arg):
            matched_name, uid, gid = entry.name, entry.uid, entry.gid
            break
    else:
        if user_arg != "":
            if uid_arg is None:
                raise _user_not_found(user_arg)
            uid = _check_range(uid_arg)
    additional: tuple[int, ...] = ()
    if group_arg != "":
        for group in read_group(rootfs):
            if (group.gid == gid_arg) if gid_arg is not None else (group.name == group_arg):
                gid = group.gid
                break
        else:
            if gid_arg is None:
                raise _group_not_found(group_arg)
            gid = _check_range(gid_arg)
    elif matched_name:
        additional = tuple(g.gid for g in read_group(rootfs) if matched_name in g.members)
    return ResolvedUser(uid, gid, additional)


def _chown_id(text: str) -> int | None:
    """BuildKit's ``--chown`` id parsing: ``root``, ``""`` (0) or a 32-bit number."""
    if text in ("root", ""):
        return 0
    value = _numeric(text)
    if value is None or not -(2**31) <= value < 2**31:
        return None
    return _check_range(value)


def resolve_chown(rootfs: Path, spec: str) -> tuple[int, int]:
    """Resolve a ``--chown=user[:group]`` value to ``(uid, gid)``.

    A numeric user without a group gets the same number as gid; a user name gets the uid
    and primary gid of its ``/etc/passwd`` entry; a group overrides the gid (a name is
    looked up in ``/etc/group``). Unlike BuildKit, which silently uses 0 for a name it
    cannot find, an unknown user or group name is an error, as the Dockerfile reference
    documents.
    """
    user_part, sep, group_part = spec.partition(":")
    uid = _chown_id(user_part)
    if uid is not None:
        gid = uid
    else:
        for entry in read_passwd(rootfs):
            if entry.name == user_part:
                uid, gid = entry.uid, entry.gid
                break
        else:
            raise _user_not_found(user_part)
    if sep:
        group_id = _chown_id(group_part)
        if group_id is None:
            for group in read_group(rootfs):
                if group.name == group_part:
                    group_id = group.gid
                    break
            else:
                raise _group_not_found(group_part)
        gid = group_id
    return uid, gid
