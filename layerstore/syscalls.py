"""The one binding of the C library: mount(2), umount2(2), unshare(2), syncfs(2),
sethostname(2) and sync_file_range(2).

Every caller that mounts (the snapshotter, the RUN sandbox) goes through :func:`mount` and
:func:`umount`, which raise ``OSError`` carrying the errno and a message naming the call;
:func:`mount_errno` / :func:`umount_errno` return the errno instead, for callers that
decide what an error means. :data:`libc` is the loaded library for the few other calls a
caller needs (``prctl``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os

__all__ = [
    "CLONE_FS", "MNT_DETACH", "MS_BIND", "MS_DIRSYNC", "MS_NOATIME", "MS_NODEV",
    "MS_NODIRATIME", "MS_NOEXEC", "MS_NOSUID", "MS_PRIVATE", "MS_RDONLY", "MS_REC",
    "MS_RELATIME", "MS_REMOUNT", "MS_SHARED", "MS_SLAVE", "MS_STRICTATIME", "MS_SYNCHRONOUS",
    "MS_UNBINDABLE", "libc", "mount", "mount_errno", "sethostname", "sync_file_range", "syncfs",
    "umount", "umount_errno", "unshare",
]

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MNT_DETACH = 0x2
CLONE_FS = 0x200


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(None, use_errno=True)  # the C library this process already uses
    lib.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                          ctypes.c_char_p)
    lib.mount.restype = ctypes.c_int
    lib.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
    lib.umount2.restype = ctypes.c_int
    lib.unshare.argtypes = (ctypes.c_int,)
    lib.unshare.restype = ctypes.c_int
    lib.syncfs.argtypes = (ctypes.c_int,)
    lib.syncfs.restype = ctypes.c_int
    lib.sethostname.argtypes = (ctypes.c_char_p, ctypes.c_size_t)
    lib.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                          ctypes.c_ulong)
    with contextlib.suppress(AttributeError):  # a C library without it: a no-op below
        lib.sync_file_range.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                                        ctypes.c_uint)
        lib.sync_file_range.restype = ctypes.c_int
    return lib


libc = _load()


def _path(value: str | os.PathLike[str]) -> bytes:
    return os.fsencode(os.fspath(value))


def mount_errno(source: str | None, target: str | os.PathLike[str], fstype: str | None,
                flags: int, data: str | None = None) -> int:
    """Call mount(2); return 0 or the errno."""
    rc = libc.mount(
        os.fsencode(source) if source else None,
        _path(target),
        os.fsencode(fstype) if fstype else None,
        flags,
        os.fsencode(data) if data else None,
    )
    return ctypes.get_errno() if rc != 0 else 0


def mount(source: str | None, target: str | os.PathLike[str], fstype: str | None, flags: int,
          data: str | None = None) -> None:
    """Call mount(2); ``OSError`` naming the filesystem type and target on failure."""
    err = mount_errno(source, target, fstype, flags, data)
    if err:
        raise OSError(err, f"mount {fstype or 'bind'} on {os.fspath(target)}: "
                           f"{os.strerror(err)}")


def umount_errno(target: str | os.PathLike[str], flags: int = 0) -> int:
    """Call umount2(2); return 0 or the errno."""
    return ctypes.get_errno() if libc.umount2(_path(target), flags) != 0 else 0


def umount(target: str | os.PathLike[str], flags: int = 0) -> None:
    """Call umount2(2); ``OSError`` naming the target on failure."""
    err = umount_errno(target, flags)
    if err:
        raise OSError(err, f"unmount of {os.fspath(target)}: {os.strerror(err)}")


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    """Call unshare(2); ``OSError`` on failure."""
    _check(libc.unshare(flags), "unshare")


def syncfs(fd: int) -> None:
    """Call syncfs(2) on the filesystem holding ``fd``; ``OSError`` on failure."""
    _check(libc.syncfs(fd), "syncfs")


def sethostname(name: bytes) -> None:
    """Call sethostname(2); ``OSError`` on failure."""
    _check(libc.sethostname(name, len(name)), "sethostname")


def sync_file_range(fd: int, offset: int, length: int, flags: int) -> int:
    """Call sync_file_range(2); return 0 or the errno (``ENOSYS`` where the C library lacks
    it)."""
    try:
        call = libc.sync_file_range
    except AttributeError:
        return errno.ENOSYS
    return ctypes.get_errno() if call(fd, offset, length, flags) != 0 else 0
