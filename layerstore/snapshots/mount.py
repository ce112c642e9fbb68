"""Performing :class:`~layerstore.snapshots.snapshotter.Mount` data with mount(2)/umount2(2).

:func:`mounted` is the normal entry point: it mounts, yields the target and always unmounts
(on a normal exit, an exception or ``KeyboardInterrupt``), so no mount outlives the block.

A mount with ``workdir`` set is performed in a short-lived thread that first unshares its
filesystem attributes (``unshare(CLONE_FS)``) and chdirs into ``workdir``; relative paths in
its options (overlay ``lowerdir=12/fs:11/fs``) resolve there while the process's own working
directory, seen by every other thread, never changes. The thread shares the process's mount
namespace, so the mount is visible to the caller.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from layerstore import syscalls
from layerstore.errors import MountError
from layerstore.mountinfo import MountInfo, mountinfo, mounts_under
from layerstore.snapshots.snapshotter import Mount
from layerstore.syscalls import (
    CLONE_FS,
    MNT_DETACH,
    MS_BIND,
    MS_DIRSYNC,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_SYNCHRONOUS,
    MS_UNBINDABLE,
)
from layerstore.userns import in_user_namespace

__all__ = ["MAX_MOUNT_DATA", "MountInfo", "ParsedOptions", "mount", "mount_all", "mounted",
           "mountinfo", "mounts_under", "parse_options", "unmount", "unmount_new"]

#: The kernel copies at most one page of mount data, including the terminating NUL.
MAX_MOUNT_DATA = 4095

# option -> (clear, set)
_FLAGS: dict[str, tuple[int, int]] = {
    "ro": (0, MS_RDONLY),
    "rw": (MS_RDONLY, 0),
    "nosuid": (0, MS_NOSUID),
    "suid": (MS_NOSUID, 0),
    "nodev": (0, MS_NODEV),
    "dev": (MS_NODEV, 0),
    "noexec": (0, MS_NOEXEC),
    "exec": (MS_NOEXEC, 0),
    "sync": (0, MS_SYNCHRONOUS),
    "async": (MS_SYNCHRONOUS, 0),
    "dirsync": (0, MS_DIRSYNC),
    "noatime": (0, MS_NOATIME),
    "atime": (MS_NOATIME, 0),
    "nodiratime": (0, MS_NODIRATIME),
    "diratime": (MS_NODIRATIME, 0),
    "relatime": (0, MS_RELATIME),
    "norelatime": (MS_RELATIME, 0),
    "strictatime": (0, MS_STRICTATIME),
    "nostrictatime": (MS_STRICTATIME, 0),
    "bind": (0, MS_BIND),
    "rbind": (0, MS_BIND | MS_REC),
    "remount": (0, MS_REMOUNT),
}
_PROPAGATION = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}
# statvfs f_flag bits that a bind remount must keep (they may be locked by the kernel)
_KEEP_ON_REMOUNT = (
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME),
    (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)


_USERNS_OVERLAY = ("; in a user namespace (a rootless build) overlayfs needs Linux 5.11 or "
                   "later and the store on a local filesystem such as ext4, xfs or btrfs "
                   "(not overlayfs or NFS)")


@dataclass(frozen=True)
class ParsedOptions:
    """A mount's options split into mount(2) flags, propagation flags and the data string."""

    flags: int
    propagation: int
    data: str


def parse_options(options: Sequence[str]) -> ParsedOptions:
    """Split ``options`` the way mount(8) does: known flag words become flags, the rest
    (``lowerdir=…``, ``size=…``) joins the comma-separated data string."""
    flags = 0
    propagation = 0
    data: list[str] = []
    for opt in options:
        if opt in _FLAGS:
            clear, set_ = _FLAGS[opt]
            flags = (flags & ~clear) | set_
        elif opt in _PROPAGATION:
            propagation |= _PROPAGATION[opt]
        else:
            data.append(opt)
    return ParsedOptions(flags, propagation, ",".join(data))


def _describe(m: Mount, target: str) -> str:
    options = ",".join(m.options)
    if len(options) > 300:
        options = f"{options[:150]}…{options[-150:]} ({len(options)} bytes)"
    where = f" (relative to {m.workdir})" if m.workdir else ""
    return f"{m.type} mount of {m.source!r} on {target!r} with options {options!r}{where}"


def _fail(action: str, err: int, hint: str = "") -> MountError:
    name = errno.errorcode.get(err, str(err))
    exc = MountError(f"{action} failed: {os.strerror(err)} ({name}){hint}")
    exc.errno = err
    return exc


def _sys_mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> int:
    """Call mount(2); return 0 or the errno."""
    return syscalls.mount_errno(source, target, fstype, flags, data)


def _mount_one(m: Mount, target: str) -> None:
    """Perform one mount in the calling thread (whose cwd is already right)."""
    opts = parse_options(m.options)
    flags = opts.flags
    what = _describe(m, target)
    if m.type == "bind" or flags & MS_BIND:
        bind_flags = MS_BIND | (flags & MS_REC)
        err = _sys_mount(m.source, target, None, bind_flags, None)
        if err:
            raise _fail(what, err)
        extra = flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
        if extra:
            current = os.statvfs(target).f_flag
            for st, ms in _KEEP_ON_REMOUNT:
                if current & st:
                    extra |= ms
            err = _sys_mount(None, target, None, MS_REMOUNT | MS_BIND | extra, None)
            if err:
                _umount_quiet(target)
                raise _fail(f"read-only/flag remount of {what}", err)
    else:
        size = len(os.fsencode(opts.data))
        if size > MAX_MOUNT_DATA:
            raise MountError(
                f"{what} failed: option data is {size} bytes, "
                f"more than the {MAX_MOUNT_DATA} the kernel accepts"
            )
        err = _sys_mount(m.source, target, m.type, flags, opts.data)
        if err:
            hint = _USERNS_OVERLAY if m.type == "overlay" and in_user_namespace() else ""
            raise _fail(what, err, hint)
    if opts.propagation:
        err = _sys_mount(None, target, None, opts.propagation, None)
        if err:
            _umount_quiet(target)
            raise _fail(f"propagation change of {what}", err)


def _umount_quiet(target: str) -> None:
    if syscalls.umount_errno(target):
        syscalls.umount_errno(target, MNT_DETACH)


def _mount_in_workdir(m: Mount, workdir: str, target: str) -> None:
    """Perform ``m`` from a thread with a private cwd set to ``workdir``."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            try:
                syscalls.unshare(CLONE_FS)
            except OSError as exc:
                raise _fail(f"unshare(CLONE_FS) for {_describe(m, target)}",
                            exc.errno or errno.EINVAL) from None
            try:
                os.chdir(workdir)
            except OSError as exc:
                raise MountError(
                    f"{_describe(m, target)} failed: cannot enter workdir: {exc.strerror}"
                ) from exc
            _mount_one(m, target)
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, name="layerstore-mount")
    thread.start()
    try:
        thread.join()
    except BaseException:
        # never return while the mount may still happen behind the caller's back
        thread.join()
        raise
    if outcome and outcome[0] is not None:
        raise outcome[0]


def mount(m: Mount, target: str | os.PathLike[str]) -> None:
    """Perform one mount on ``target``; ``MountError`` naming the mount and errno on failure."""
    target_s = os.path.abspath(target)
    if m.workdir:
        _mount_in_workdir(m, m.workdir, target_s)
    else:
        _mount_one(m, target_s)


def mount_all(mounts: Sequence[Mount], target: str | os.PathLike[str]) -> None:
    """Perform ``mounts`` in order, stacked on ``target``; on failure undo those done."""
    target_s = os.path.abspath(target)
    before = {mi.mount_id for mi in mounts_under(target_s)}
    try:
        for m in mounts:
            mount(m, target_s)
    except BaseException:
        unmount_new(target_s, before)
        raise


def unmount(target: str | os.PathLike[str], *, detach: bool = False) -> None:
    """Unmount the topmost mount on ``target`` (lazily with ``detach``)."""
    target_s = os.path.abspath(target)
    err = syscalls.umount_errno(target_s, MNT_DETACH if detach else 0)
    if err:
        raise _fail(f"unmount of {target_s!r}", err)


def unmount_new(target: str | os.PathLike[str], keep: Collection[int] = ()) -> None:
    """Unmount every mount at or below ``target`` whose id is not in ``keep``, deepest and
    newest first, falling back to a lazy detach for a busy one."""
    for mi in reversed(mounts_under(target)):
        if mi.mount_id in keep:
            continue
        err = syscalls.umount_errno(mi.mount_point)
        if err:
            if err == errno.EINVAL:
                continue  # already gone with its parent
            err = syscalls.umount_errno(mi.mount_point, MNT_DETACH)
            if err and err != errno.EINVAL:
                raise _fail(f"unmount of {mi.mount_point!r}", err)


@contextmanager
def mounted(
    mounts: Sequence[Mount], target: str | os.PathLike[str] | None = None
) -> Iterator[Path]:
    """Mount ``mounts`` on ``target`` (a fresh temporary directory if None) and yield it.

    Every mount made on or below the target while the block runs is undone when it ends,
    however it ends; a temporary target directory is removed too.
    """
    made_dir = target is None
    if target is None:
        target = tempfile.mkdtemp(prefix="layerstore-mnt-")
    target_p = Path(os.path.abspath(target))
    try:
        before = {mi.mount_id for mi in mounts_under(target_p)}
        try:
            mount_all(mounts, target_p)
            yield target_p
        finally:
            unmount_new(target_p, before)
    finally:
        if made_dir:
            # rmdir, never rmtree: should an unmount have failed, the tree is someone's data
            with contextlib.suppress(OSError):
                os.rmdir(target_p)
