"""The one tree copier: copying files and directory trees with everything ``cp -a`` keeps.

Owners (numeric), mode bits (setuid, setgid, sticky), access and modification times,
extended attributes (all but overlayfs bookkeeping; ones the destination refuses are
skipped), symlinks as symlinks, device nodes, FIFOs and sockets as such, and hard links
within one copy as hard links. File bodies are copied inside the kernel
(``copy_file_range``, else ``sendfile``). Failures are ``OSError`` naming the path.

:func:`copy_tree` copies a whole tree; :func:`copy_leaf`, :func:`copy_content`,
:func:`copy_xattrs` and :func:`copy_metadata` are its pieces, for callers (COPY) that walk
trees with rules of their own.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "Inodes",
    "SkipRule",
    "copy_content",
    "copy_leaf",
    "copy_metadata",
    "copy_new_file",
    "copy_tree",
    "copy_xattrs",
]

_CHUNK = 1 << 24
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NO_COPY_RANGE = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM)
_OVERLAY_XATTR = ("trusted.overlay.", "user.overlay.")

#: Source inode ``(st_dev, st_ino)`` → the destination path it was first copied to.
Inodes = dict[tuple[int, int], str]

#: ``skip(relative_path, is_dir)``: whether to leave an entry (and what is below it) out.
SkipRule = Callable[[str, bool], bool]


def copy_content(src: str, dst: str) -> None:
    """Copy the bytes of ``src`` to the new file ``dst`` (mode 0600 until metadata is set)."""
    with _copied(src, dst):
        pass


def copy_new_file(src: str, dst: str, st: os.stat_result, owner: tuple[int, int],
                  mode: int) -> None:
    """Create ``dst`` (it must not exist: ``FileExistsError``) with the bytes of ``src``,
    then ``owner``, ``mode``, ``st``'s times and ``src``'s xattrs, all set through the open
    files: no path lookups after the create (which an overlay makes costly)."""
    with _copied(src, dst) as (in_fd, out_fd):
        os.fchown(out_fd, *owner)
        os.fchmod(out_fd, mode)
        os.utime(out_fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        copy_xattrs(in_fd, out_fd)


@contextmanager
def _copied(src: str, dst: str) -> Iterator[tuple[int, int]]:
    """Open ``src``, create ``dst`` (mode 0600), copy the bytes and yield both descriptors;
    both are closed when the block ends."""
    in_fd = os.open(src, _READ_FLAGS)
    try:
        out_fd = os.open(dst, _WRITE_FLAGS, 0o600)
        try:
            _copy_bytes(in_fd, out_fd)
            yield in_fd, out_fd
        finally:
            os.close(out_fd)
    finally:
        os.close(in_fd)


def _copy_bytes(in_fd: int, out_fd: int) -> None:
    """Copy from ``in_fd`` to ``out_fd`` until the end, inside the kernel."""
    use_range = True
    while True:
        if use_range:
            try:
                copied = os.copy_file_range(in_fd, out_fd, _CHUNK)
            except OSError as exc:
                if exc.errno not in _NO_COPY_RANGE:
                    raise
                use_range = False
                continue
        else:
            copied = os.sendfile(out_fd, in_fd, None, _CHUNK)
        if copied == 0:
            break


def copy_xattrs(src: str | int, dst: str | int) -> None:
    """Copy extended attributes (of paths, not following symlinks, or of open files);
    overlayfs ones and ones ``dst`` refuses are skipped."""
    follow = not isinstance(src, str)
    try:
        keys = os.listxattr(src, follow_symlinks=follow)
    except OSError:
        return
    for key in keys:
        if key.startswith(_OVERLAY_XATTR):
            continue
        try:
            os.setxattr(dst, key, os.getxattr(src, key, follow_symlinks=follow),
                        follow_symlinks=follow)
        except OSError:
            continue


def copy_metadata(src: str, dst: str, st: os.stat_result, *,
                  owner: tuple[int, int] | None = None, mode: int | None = None) -> None:
    """Owner (``owner`` or ``st``'s), mode bits (``mode`` or ``st``'s), times and xattrs of
    ``dst`` from ``src`` described by its lstat ``st``."""
    os.lchown(dst, *(owner if owner is not None else (st.st_uid, st.st_gid)))
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode) if mode is None else mode)
    copy_xattrs(src, dst)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_leaf(src: str, dst: str, st: os.stat_result, inodes: Inodes | None = None, *,
              link: bool = False) -> bool:
    """Make ``dst`` (which must not exist) a copy of the non-directory ``src``: a regular
    file, symlink, device node, FIFO or socket. Metadata is not set.

    A second source name of an inode already in ``inodes`` becomes a hard link to its
    first copy. With ``link`` a regular file is hard-linked to ``src`` itself when the
    filesystem allows it. Returns whether ``dst`` is a hard link (its metadata is shared).
    """
    mode = st.st_mode
    if stat.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        first = inodes.get(key) if inodes is not None and st.st_nlink > 1 else None
        if first is not None:
            os.link(first, dst, follow_symlinks=False)
            return True
        if link:
            try:
                os.link(src, dst, follow_symlinks=False)
                return True
            except OSError:
                pass
        copy_content(src, dst)
        if inodes is not None and st.st_nlink > 1:
            inodes[key] = dst
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or \
            stat.S_ISSOCK(mode):
        os.mknod(dst, stat.S_IFMT(mode) | 0o600, st.st_rdev)
    else:
        raise OSError(errno.EINVAL, "unsupported file type", src)
    return False


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


class _Copier:
    def __init__(self, link: bool, skip: SkipRule | None) -> None:
        self.link = link
        self.skip = skip
        self.inodes: Inodes = {}

    def entry(self, src: str, dst: str, rel: str, st: os.stat_result) -> None:
        try:
            existing: os.stat_result | None = os.lstat(dst)
        except FileNotFoundError:
            existing = None
        if not stat.S_ISDIR(st.st_mode):
            if existing is not None:
                if stat.S_ISDIR(existing.st_mode):
                    raise IsADirectoryError(errno.EISDIR,
                                            "cannot overwrite a directory with a non-directory",
                                            dst)
                os.unlink(dst)
            if not self.copy_leaf(src, dst, st):
                copy_metadata(src, dst, st)
            return
        if existing is not None and not stat.S_ISDIR(existing.st_mode):
            _remove(dst)
            existing = None
        if existing is None:
            os.mkdir(dst, 0o700)
        self.children(src, dst, rel)
        copy_metadata(src, dst, st)

    def copy_leaf(self, src: str, dst: str, st: os.stat_result) -> bool:
        return copy_leaf(src, dst, st, self.inodes, link=self.link)

    def children(self, src: str, dst: str, rel: str) -> None:
        with os.scandir(src) as it:
            names = sorted(e.name for e in it)
        for name in names:
            child_src = os.path.join(src, name)
            child_rel = f"{rel}/{name}" if rel else name
            child_st = os.lstat(child_src)
            if self.skip is not None and self.skip(child_rel, stat.S_ISDIR(child_st.st_mode)):
                continue
            self.entry(child_src, os.path.join(dst, name), child_rel, child_st)


def copy_tree(source: str | os.PathLike[str], dest: str | os.PathLike[str], *,
              contents: bool = False, link: bool = False, skip: SkipRule | None = None) -> None:
    """Copy ``source`` (any kind of file; a directory with everything below it) to ``dest``.

    Without ``contents`` ``dest`` is created (an existing non-directory there is replaced;
    an existing directory is merged into). With ``contents`` the directory ``source`` is
    merged into the directory ``dest`` (made if missing), which takes ``source``'s metadata,
    as ``cp -a source/. dest`` does. ``link`` hard-links regular files instead of copying
    them where it can; ``skip`` leaves out the entries it is true for (paths relative to
    ``source``).
    """
    src, dst = os.fspath(source), os.fspath(dest)
    copier = _Copier(link, skip)
    st = os.lstat(src)
    if contents:
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", src)
        Path(dst).mkdir(parents=True, exist_ok=True)
    copier.entry(src, dst, "", st)
