"""Rootless builds: an ordinary user becomes root of a user namespace of its own.

A ``pybuild`` command run by a user other than root first calls :func:`enter`: the process
unshares a user and a mount namespace, and a helper forked just before (still outside)
maps them with the setuid ``newuidmap``/``newgidmap`` of Debian's ``uidmap`` package, as
buildah and rootlesskit do::

    inside     outside
    0          the user's own uid (gid)
    1..N       the user's ranges in /etc/subuid (/etc/subgid), in file order: at least
               65535 ids (useradd gives 65536), all of them mapped

From then on the whole command (the store, the overlay mounts, the RUN sandbox, layer
writing, push and pull) runs as uid 0 of that namespace, in the same process: no re-exec,
no second interpreter start. Files of any uid up to 65535 are kept as they are, so a layer
written here is byte for byte the layer root writes (an id beyond the user's range cannot
be set: chown fails with EINVAL, as in every rootless builder). Overlays are mounted with
``userxattr`` (:mod:`layerstore.userns`); the kernel allows overlayfs in a user namespace
since 5.11.

The store of a rootless user defaults to ``$XDG_DATA_HOME/pybuild``
(``~/.local/share/pybuild``), its config file to ``$XDG_CONFIG_HOME/pybuild``; the daemon
of :mod:`builder.daemon` serves one user only (its socket lives in the user's runtime
directory and the peer's credentials are checked on both ends).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError
from layerstore import syscalls

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000

SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
PROC_SYS = Path("/proc/sys")

#: The fewest subordinate ids a rootless user needs: ids 1..65535 inside.
SUBORDINATE_IDS = 65535

_USERNS_SYSCTLS = (
    ("user/max_user_namespaces", "user.max_user_namespaces", "a positive number"),
    ("kernel/unprivileged_userns_clone", "kernel.unprivileged_userns_clone", "1"),
)
_APPARMOR_SYSCTL = ("kernel/apparmor_restrict_unprivileged_userns",
                    "kernel.apparmor_restrict_unprivileged_userns")


class RootlessError(BuildError):
    """A rootless build cannot start: no subordinate ids, no user namespaces, no uidmap."""


@dataclass(frozen=True)
class IdRange:
    """A range of subordinate ids: ``count`` ids from ``start``."""

    start: int
    count: int


@dataclass(frozen=True)
class Identity:
    """Who runs a rootless command, as the host knows them."""

    uid: int
    gid: int
    user: str
    home: str

    @classmethod
    def current(cls) -> Identity:
        """This process's real user (its name and home from the password database)."""
        uid, gid = os.getuid(), os.getgid()
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            raise RootlessError(f"uid {uid} has no entry in /etc/passwd: rootless builds "
                                "need a user name to look up in /etc/subuid") from None
        return cls(uid, gid, entry.pw_name, os.environ.get("HOME") or entry.pw_dir)


@dataclass(frozen=True)
class Session:
    """The user namespace this process entered: who it was and which ids are mapped."""

    identity: Identity
    uids: tuple[IdRange, ...]
    gids: tuple[IdRange, ...]


_session: Session | None = None


def active() -> Session | None:
    """The rootless session this process runs in (None for a command run by root)."""
    return _session


def needed() -> bool:
    """Whether this process has to enter a user namespace before it can build: it is not
    root and has not entered one yet."""
    return _session is None and os.geteuid() != 0


def running_as_root() -> bool:
    """True for the host's real root, False for a rootless user (before or after
    :func:`enter`, where the process's uid is 0 as well)."""
    return _session is None and os.geteuid() == 0


def data_home() -> Path:
    """The default store of a rootless user: ``$XDG_DATA_HOME/pybuild`` or
    ``~/.local/share/pybuild``."""
    base = os.environ.get("XDG_DATA_HOME")
    if not base or not os.path.isabs(base):
        home = _session.identity.home if _session else os.path.expanduser("~")
        base = os.path.join(home, ".local", "share")
    return Path(base) / "pybuild"


def subordinate_ranges(path: Path, identity: Identity) -> tuple[IdRange, ...]:
    """Every range ``path`` (/etc/subuid or /etc/subgid) gives the user, by name or by
    numeric uid, in file order; together they must hold :data:`SUBORDINATE_IDS` ids."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise RootlessError(f"cannot read {path}: {exc.strerror}") from None
    found: list[IdRange] = []
    for line in text.splitlines():
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (identity.user, str(identity.uid)):
            continue
        with contextlib.suppress(ValueError):
            start, count = int(fields[1]), int(fields[2])
            if start >= 0 and count > 0:
                found.append(IdRange(start, count))
    total = sum(r.count for r in found)
    if not found:
        raise RootlessError(
            f"{path} has no entry for user {identity.user!r}: rootless builds need "
            f"{SUBORDINATE_IDS} subordinate ids (as root: usermod --add-sub{_kind(path)}s "
            f"100000-165535 {identity.user})")
    if total < SUBORDINATE_IDS:
        raise RootlessError(
            f"{path}: user {identity.user!r} has {total} subordinate ids; rootless builds "
            f"need {SUBORDINATE_IDS} (as root: usermod --add-sub{_kind(path)}s "
            f"100000-165535 {identity.user})")
    return tuple(found)


def _kind(path: Path) -> str:
    return "gid" if path.name == "subgid" else "uid"


def check_user_namespaces(proc_sys: Path = PROC_SYS) -> None:
    """Raise :class:`RootlessError` naming the sysctl when the kernel's settings under
    ``proc_sys`` forbid an ordinary user to create a user namespace."""
    for relative, name, wanted in _USERNS_SYSCTLS:
        try:
            value = (proc_sys / relative).read_text().strip()
        except OSError:
            continue
        if value == "0":
            raise RootlessError(f"user namespaces are disabled: sysctl {name} is 0; rootless "
                                f"builds need {wanted} (as root: sysctl -w {name}={wanted})")


def _unshare_failed(err: OSError, proc_sys: Path = PROC_SYS) -> RootlessError:
    """The error for a failed unshare(CLONE_NEWUSER): which setting to look at."""
    check_user_namespaces(proc_sys)
    names = [name for _, name, _ in _USERNS_SYSCTLS]
    relative, name = _APPARMOR_SYSCTL
    with contextlib.suppress(OSError):
        if (proc_sys / relative).read_text().strip() == "1":
            names.append(name)
    return RootlessError(f"cannot create a user namespace ({err.strerror}): check sysctl "
                         f"{' and '.join(names)}, and that pybuild does not run in a "
                         "container that forbids it")


def _helper_path(name: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if os.access(p, os.X_OK)), None)
    if found is None:
        raise RootlessError(f"{name} not found: rootless builds need the uidmap package "
                            "(apt-get install uidmap)")
    return found


def _map_argv(tool: str, pid: int, own: int, ranges: tuple[IdRange, ...]) -> list[str]:
    """``newuidmap PID 0 OWN 1 1 START COUNT …``: the user is 0, its ranges follow from 1."""
    argv = [tool, str(pid), "0", str(own), "1"]
    inside = 1
    for r in ranges:
        argv += [str(inside), str(r.start), str(r.count)]
        inside += r.count
    return argv


def enter() -> Session:
    """Make this process root of a new user namespace (and mount namespace) mapping the
    user to 0 and its subordinate ids from 1 on; returns the session.

    It must be called while the process has one thread (before any pool starts).
    Everything is checked first, so a missing subuid entry or disabled user namespaces
    raise :class:`RootlessError` with the process unchanged.
    """
    global _session
    if _session is not None:
        return _session
    identity = Identity.current()
    check_user_namespaces()
    uids = subordinate_ranges(SUBUID, identity)
    gids = subordinate_ranges(SUBGID, identity)
    newuidmap, newgidmap = _helper_path("newuidmap"), _helper_path("newgidmap")
    if threading.active_count() != 1:
        raise RootlessError("cannot enter a user namespace: the process already runs "
                            f"{threading.active_count()} threads")
    maps = [_map_argv(newuidmap, os.getpid(), identity.uid, uids),
            _map_argv(newgidmap, os.getpid(), identity.gid, gids)]
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    helper = os.fork()
    if helper == 0:  # pragma: no cover - runs in the forked helper
        os.close(go_w)
        os.close(out_r)
        os._exit(_run_maps(go_r, out_w, maps))
    os.close(go_r)
    os.close(out_w)
    try:
        try:
            syscalls.unshare(CLONE_NEWUSER | CLONE_NEWNS)
        except OSError as exc:
            raise _unshare_failed(exc) from None
        os.write(go_w, b"1")
        os.close(go_w)
        go_w = -1
        message = _read_all(out_r).decode(errors="replace").strip()
        _, status = os.waitpid(helper, 0)
        helper = 0
        if status != 0:
            raise RootlessError(f"cannot map the ids of user {identity.user!r} into its user "
                                f"namespace: {message or 'newuidmap/newgidmap failed'}")
    finally:
        if go_w >= 0:
            os.close(go_w)
        os.close(out_r)
        if helper:
            os.waitpid(helper, 0)
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    _session = Session(identity, uids, gids)
    return _session


def _run_maps(go: int, out: int, maps: list[list[str]]) -> int:  # pragma: no cover
    """In the helper: wait until the parent has unshared, then write its id maps."""
    try:
        if os.read(go, 1) != b"1":
            return 1  # the parent could not unshare: nothing to map
        for argv in maps:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  check=False)
            if proc.returncode != 0:
                text = (proc.stderr or proc.stdout).decode(errors="replace").strip()
                os.write(out, f"{' '.join(argv)}: {text or f'exit {proc.returncode}'}".encode())
                return 1
        return 0
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            os.write(out, str(exc).encode())
        return 1


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    return data
