"""A container's files: its root mounted for reading or writing, ``export`` as a tar, and
``cp`` in both directions.

Paths inside the container are resolved below its root as a process chrooted into it would
(:mod:`layerstore.rootpath`): ``..`` and symlinks never lead out of it. Copies go through a
tar stream (written by :class:`~layerstore.archive.writer.TarWriter`, extracted by the layer
store's path-safe :class:`~layerstore.archive.reader.Applier`), so symlinks are copied as
symlinks, hardlinks as links, owners, modes, times and xattrs are kept, and an entry can
never be written outside the destination directory. Copying follows ``docker cp``:

- a file onto a missing path makes that file (its directory must exist; a path ending in
  ``/`` must be an existing directory), onto a file replaces it, into a directory goes in
  it under its own name;
- a directory onto a missing path makes that directory, into a directory goes in it under
  its own name, or only its contents when the source ends in ``/.``; onto a file is an
  error.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from builder.containerstore import Container
from builder.errors import BuildError
from builder.store import BuildStore
from layerstore import rootpath
from layerstore.archive.reader import Applier, TarReader
from layerstore.archive.writer import RECORD_SIZE, TarWriter, walk
from layerstore.errors import LayerstoreError
from layerstore.snapshots.mount import mounted

__all__ = ["Target", "container_root", "copy_from_container", "copy_into_container",
           "export_container", "host_target", "write_source_tar"]


@contextlib.contextmanager
def container_root(store: BuildStore, container: Container) -> Iterator[Path]:
    """The container's root directory: where its run has it mounted while it runs (seen
    through ``/proc/PID/root`` when the run has a mount namespace of its own), else its
    snapshot mounted for the length of the block."""
    if container.running:
        if container.rootfs and os.path.ismount(container.rootfs):
            yield Path(container.rootfs)
            return
        through = Path(f"/proc/{container.pid}/root{container.rootfs}")
        try:
            reachable = bool(container.rootfs) and through.is_dir()
        except OSError:  # another user namespace (a rootless run): not ours to enter
            reachable = False
        if reachable:
            yield through
            return
        raise BuildError(f"container {container.name} is running in a mount namespace this "
                         "command cannot enter (a rootless run); its files can be reached "
                         "once it has ended")
    mounts = store.snapshots.mounts(container.snapshot)
    point = tempfile.mkdtemp(prefix="container-", dir=store.tmp)
    try:
        with mounted(mounts, point) as root:
            yield root
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(point)


def export_container(store: BuildStore, container: Container, out: BinaryIO) -> None:
    """Write the container's whole filesystem to ``out`` as a tar, as ``docker export``
    does (entries named without a leading ``./``)."""
    with container_root(store, container) as root:
        base = os.fsencode(root)
        try:
            tar = TarWriter(out.write)
            for name, path, st in walk(base):
                tar.add(name, path, st)
            tar.close(record_size=RECORD_SIZE)
        except OSError as exc:
            where = f" ({os.fsdecode(exc.filename)})" if exc.filename else ""
            raise BuildError(f"cannot export container {container.name}: "
                             f"{exc.strerror or exc}{where}") from None


@dataclass(frozen=True)
class Target:
    """Where a copy lands: an existing directory, and the name of the copied top entry in
    it (None: the source directory's contents go straight into it)."""

    directory: Path
    name: str | None


@dataclass(frozen=True)
class _Source:
    path: Path
    is_dir: bool
    contents_only: bool


def _source(path: Path, text: str) -> _Source:
    st = os.lstat(path)
    is_dir = stat.S_ISDIR(st.st_mode)
    contents = is_dir and (text.endswith("/.") or text == ".")
    return _Source(path, is_dir, contents)


def _target(dest: Path, dest_text: str, source: _Source, source_text: str,
            shown: str) -> Target:
    """Where ``source`` goes for the destination path ``dest`` (already resolved);
    ``shown`` names the destination in errors."""
    base = os.path.basename(source_text.rstrip("/")) if source_text.rstrip("/") else "/"
    if base in (".", "/"):
        base = os.path.basename(str(source.path)) or "root"
    try:
        st: os.stat_result | None = os.stat(dest)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise BuildError(f"{shown}: not a directory") from None
    if st is None:
        if dest_text.endswith("/") and not source.is_dir:
            raise BuildError(f"{shown}: no such directory")
        parent = dest.parent
        if not parent.is_dir():
            raise BuildError(f"{shown}: no such directory ({parent} is missing)")
        return Target(parent, dest.name)
    if stat.S_ISDIR(st.st_mode):
        if source.contents_only:
            return Target(dest, None)
        return Target(dest, base)
    if source.is_dir:
        raise BuildError(f"{shown}: cannot copy a directory onto a file")
    return Target(dest.parent, dest.name)


def write_source_tar(source: Path, name: str | None, out: BinaryIO) -> None:
    """Write ``source`` to ``out`` as a tar whose top entry is ``name`` (for a directory
    with ``name`` None, only the entries below it)."""
    tar = TarWriter(out.write)
    base = os.fsencode(source)
    st = os.lstat(base)
    top = os.fsencode(name) if name is not None else b""
    if name is not None:
        tar.add(top, base, st)
    if stat.S_ISDIR(st.st_mode):
        for entry, path, est in walk(base):
            tar.add(top + b"/" + entry if top else entry, path, est)
    tar.close(record_size=RECORD_SIZE)


def _copy(source: Path, target: Target, what: str) -> None:
    """Stream ``source`` into ``target`` through a tar (see the module docstring)."""
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_fd, "wb") as out:
                write_source_tar(source, target.name, out)
        except BaseException as exc:  # handed to the reading side
            failure.append(exc)

    writer = threading.Thread(target=produce, daemon=True)
    writer.start()
    applied: Exception | None = None
    try:
        with os.fdopen(read_fd, "rb") as stream:
            Applier(os.fspath(target.directory), whiteouts=False).apply(TarReader(stream))
    except (LayerstoreError, OSError) as exc:
        applied = exc
    finally:
        writer.join()
    if failure and not isinstance(failure[0], BrokenPipeError):
        problem = failure[0]  # reading the source failed: that is the cause
        where = getattr(problem, "filename", None)
        shown = f"{getattr(problem, 'strerror', None) or problem}"
        raise BuildError(f"cannot copy {what}: {shown}" + (f" ({where})" if where else ""))
    if applied is not None:
        raise BuildError(f"cannot copy {what}: {applied}")


def _inside(root: Path, path: str, *, follow: bool, ref: str) -> Path | None:
    """The host path of container path ``path`` (resolved below ``root``); None when it
    does not exist."""
    parts = rootpath.walk(str(root), rootpath.split(path), follow_last=follow,
                          missing=rootpath.Missing.STOP)
    if parts is None:
        return None
    return Path(str(root), *parts) if parts else root


def copy_from_container(store: BuildStore, container: Container, src: str, dest: str, *,
                        follow: bool, stdout: BinaryIO) -> None:
    """``cp CONTAINER:SRC DEST``: copy out to the host path ``dest``, or with ``-`` as a
    tar to ``stdout``."""
    ref = f"{container.name}:{src}"
    with container_root(store, container) as root:
        found = _inside(root, src, follow=follow, ref=ref)
        if found is None or not os.path.lexists(found):
            raise BuildError(f"No such container:path: {ref}")
        if dest == "-":
            source = _source(found, src)
            name = None if source.contents_only else (
                os.path.basename(src.rstrip("/")) or found.name or ".")
            write_source_tar(found, name, stdout)
            return
        source = _source(found, src)
        target = _target(Path(os.path.abspath(dest)), dest, source, src, dest)
        _copy(found, target, f"{ref} to {dest}")


def host_target(root: Path, dest: str, ref: str) -> Path:
    """The host path of container path ``dest`` (resolved below ``root``, missing parts
    appended as they are)."""
    parts = rootpath.walk(str(root), rootpath.split(dest), missing=rootpath.Missing.APPEND)
    assert parts is not None
    return Path(str(root), *parts) if parts else root


def copy_into_container(store: BuildStore, container: Container, src: str, dest: str, *,
                        follow: bool, stdin: BinaryIO) -> None:
    """``cp SRC CONTAINER:DEST``: copy the host path ``src`` in, or with ``-`` extract the
    tar read from ``stdin`` into the directory ``dest``."""
    ref = f"{container.name}:{dest}"
    with container_root(store, container) as root:
        try:
            where = host_target(root, dest, ref)
        except OSError as exc:
            raise BuildError(f"{ref}: {exc.strerror or exc}") from None
        if src == "-":
            if not where.is_dir():
                raise BuildError(f"{ref}: destination must be a directory when copying "
                                 "from stdin")
            try:
                Applier(os.fspath(where), whiteouts=False).apply(TarReader(stdin))
            except (LayerstoreError, OSError) as exc:
                raise BuildError(f"cannot extract the tar from stdin into {ref}: {exc}"
                                 ) from None
            return
        path = Path(src)
        if follow:
            path = path.resolve()
        if not os.path.lexists(path):
            raise BuildError(f"could not find the file {src}: no such file or directory")
        source = _source(path, src)
        target = _target(where, dest, source, src, ref)
        _copy(path, target, f"{src} to {ref}")
