"""The ``filesystem`` storage driver: paths are files below one root directory.

``put_content`` and ``move`` are atomic and durable (write a temporary file in
``.tmp-staging/``, fsync, rename, fsync the directory); a writer appends to its file and
``commit`` fsyncs it. ``delete`` is not made durable: a crash right after it may bring back
content nothing refers to any more, which garbage collection removes again. The root may be
the content store of a registry root written by earlier releases (``<root>/content``): blobs
are at ``blobs/<alg>/<hex>`` in both.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from layerstore.fsutil import WRITEBACK_STEP, fsync_dir, start_writeback
from registry.storage.driver import FileInfo, FileWriter, check_path
from registry.storage.errors import BackendUnavailable, InvalidOffset, PathBusy, PathNotFound

_TMP = ".tmp-"
#: Where ``put_content`` writes before renaming into place, so that a crash leaves its
#: temporary files here and never beside stored content (``blobs/<alg>/`` holds only blobs).
_STAGING = f"{_TMP}staging"
#: Age in seconds after which a staging file is a crash's leftover (no write takes so long).
STALE_STAGING = 3600


class _FileWriter:
    """Appends to one file; see :class:`~registry.storage.driver.FileWriter`.

    Every :data:`~layerstore.fsutil.WRITEBACK_STEP` bytes the kernel is asked to start
    writing the new bytes out (``sync_file_range``), so the fsync of ``commit`` has little
    left to wait for."""

    def __init__(self, file: io.FileIO, path: Path, size: int) -> None:
        self._file = file
        self._path = path
        self._size = size
        self._written_back = size
        self._done = False

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> int:
        self._check()
        view = memoryview(data).cast("B")
        written = 0
        with _errors(self._path):
            try:
                while written < len(view):
                    written += self._file.write(view[written:]) or 0
            finally:
                self._size += written
            if self._size - self._written_back >= WRITEBACK_STEP:
                start_writeback(self._file.fileno(), self._written_back,
                                self._size - self._written_back)
                self._written_back = self._size
        return written

    def state(self) -> Mapping[str, str]:
        return {"size": str(self._size)}

    def close(self) -> None:
        if not self._done:
            self._done = True
            with _errors(self._path):
                self._file.close()

    def commit(self) -> None:
        self._check()
        self._done = True
        with _errors(self._path):
            try:
                os.fsync(self._file.fileno())
            finally:
                self._file.close()
            fsync_dir(self._path.parent)

    def cancel(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def _check(self) -> None:
        if self._done:
            raise ValueError(f"writer of {self._path} is closed")


@contextlib.contextmanager
def _errors(where: object) -> Iterator[None]:
    try:
        yield
    except (FileNotFoundError, NotADirectoryError):
        raise PathNotFound(f"nothing stored at {where}") from None
    except OSError as exc:
        raise BackendUnavailable(f"filesystem storage at {where}: {exc.strerror or exc}") from None


class FilesystemDriver:
    """A :class:`~registry.storage.driver.StorageDriver` on a local directory."""

    name = "filesystem"

    def __init__(self, root: Path) -> None:
        """Open (creating it if needed) the directory ``root``, and remove what crashes left
        in its staging directory more than :data:`STALE_STAGING` seconds ago."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._clear_staging()

    def _clear_staging(self) -> None:
        cutoff = time.time() - STALE_STAGING
        try:
            entries = list(os.scandir(self.root / _STAGING))
        except OSError:
            return
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)

    def _full(self, path: str) -> Path:
        return self.root / check_path(path)

    def get_content(self, path: str) -> bytes:
        full = self._full(path)
        with _errors(path):
            if full.is_dir():
                raise PathNotFound(f"{path} is a directory")
            return full.read_bytes()

    def put_content(self, path: str, data: bytes) -> None:
        full = self._full(path)
        with _errors(path):
            if not full.parent.is_dir():
                full.parent.mkdir(parents=True, exist_ok=True)
                fsync_dir(full.parent.parent)
            staging = self.root / _STAGING
            staging.mkdir(exist_ok=True)
            tmp = staging / f"{_TMP}{uuid.uuid4().hex}"
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, full)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            fsync_dir(full.parent)

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        full = self._full(path)
        with _errors(path):
            f = open(full, "rb")  # noqa: SIM115 - the caller closes it
            size = os.fstat(f.fileno()).st_size
            if offset < 0 or offset > size:
                f.close()
                raise InvalidOffset(f"{path} holds {size} bytes; cannot read from {offset}")
            f.seek(offset)
            return f

    def writer(self, path: str, append: bool = False,
               state: Mapping[str, str] | None = None) -> FileWriter:
        """See the protocol; besides, a writer holds an exclusive ``flock`` on its file
        while open, so a second writer of the same path (in any process) is ``PathBusy``."""
        full = self._full(path)
        with _errors(path):
            if not append:
                full.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_RDWR | os.O_CLOEXEC | (0 if append else os.O_CREAT)
            f = io.FileIO(os.open(full, flags, 0o666), "r+")
            try:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise PathBusy(f"{path} is being written by another writer") from None
                size = os.fstat(f.fileno()).st_size
                wanted = 0 if not append else int((state or {}).get("size", size))
                if wanted != size:
                    # A crash may have lost unsynced bytes, or left bytes the state does not
                    # know of: cut back to what the state recorded if the file holds it.
                    if wanted > size:
                        raise InvalidOffset(f"{path} holds {size} bytes, not {wanted}")
                    f.truncate(wanted)
                    size = wanted
                f.seek(size)
            except BaseException:
                f.close()
                raise
        return _FileWriter(f, full, size)

    def stat(self, path: str) -> FileInfo:
        full = self._full(path)
        with _errors(path):
            st = full.stat()
        is_dir = full.is_dir()
        return FileInfo(path, 0 if is_dir else st.st_size, st.st_mtime, is_dir)

    def list(self, path: str) -> list[str]:
        full = self._full(path) if path else self.root
        with _errors(path):
            names = sorted(n for n in os.listdir(full) if not n.startswith(_TMP))
        if not names and path:
            raise PathNotFound(f"nothing stored below {path}")
        return [f"{path}/{n}" if path else n for n in names]

    def walk(self, path: str) -> Iterator[FileInfo]:
        top = self._full(path) if path else self.root
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                if name.startswith(_TMP):
                    continue
                full = Path(dirpath) / name
                with contextlib.suppress(FileNotFoundError):
                    st = full.stat()
                    rel = full.relative_to(self.root).as_posix()
                    yield FileInfo(rel, st.st_size, st.st_mtime)

    def move(self, source: str, dest: str) -> None:
        src, dst = self._full(source), self._full(dest)
        with _errors(source):
            if not src.is_file():
                raise PathNotFound(f"nothing stored at {source}")
            if not dst.parent.is_dir():
                dst.parent.mkdir(parents=True, exist_ok=True)
                fsync_dir(dst.parent.parent)
            os.rename(src, dst)
            fsync_dir(dst.parent)
            if src.parent != dst.parent:
                fsync_dir(src.parent)

    def delete(self, path: str) -> None:
        full = self._full(path)
        with _errors(path):
            if full.is_dir():
                shutil.rmtree(full)
            else:
                full.unlink()

    def redirect_url(self, path: str, expires: int = 1200) -> str | None:
        return None

    def local_path(self, path: str) -> Path:
        """The file holding ``path`` (the server sends such files itself)."""
        return self._full(path)
