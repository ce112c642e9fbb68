"""A :class:`~layerstore.content.store.ContentStore` on the local filesystem.

Layout under the root::

    blobs/<alg>/<hex>        committed blobs (sha256, sha512); only ever created by rename
    ingest/<sha256(ref)>/    one directory per ingest
        data                 the bytes written so far
        meta.json            {"ref", "total", "expected", "started_at"}
        lock                 flock(LOCK_EX)-ed by the one writer holding the ingest

While bytes stream in, every few MiB the kernel is asked to start writing them out
(``sync_file_range``), so the commit's fsync has little left to wait for. A commit verifies
size and digest, fsyncs ``data``, renames it to ``blobs/<alg>/<hex>`` and
fsyncs that directory, then removes the rest of the ingest. A crash before the rename leaves
a resumable ingest; a crash after it leaves the blob committed and an empty ingest behind.
``meta.json`` is replaced atomically but not fsynced: it only helps to resume, a lost or torn
one reads as absent (the bytes in ``data`` are verified at commit all the same), and sparing
its three journal commits per blob keeps small blobs cheap.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Literal

from layerstore.content.store import Info, IngestStatus
from layerstore.digest import CHUNK, Digest, Hasher, new_hasher
from layerstore.errors import (
    DigestMismatch,
    FailedPrecondition,
    InvalidArgument,
    LayerstoreError,
    NotFound,
    SizeMismatch,
    Unavailable,
)
from layerstore.fsutil import WRITEBACK_STEP, fsync_dir, start_writeback

ALGORITHMS = ("sha256", "sha512")
_DATA = "data"
_META = "meta.json"
_LOCK = "lock"
_ACQUIRE_ATTEMPTS = 8

__all__ = ["LocalStore", "LocalWriter"]


@dataclass(frozen=True)
class _Meta:
    """What ``meta.json`` of an ingest records."""

    ref: str
    total: int | None
    expected: Digest | None
    started_at: float

    @classmethod
    def load(cls, directory: Path) -> _Meta | None:
        """Read ``meta.json`` of an ingest directory; ``None`` if missing or unreadable."""
        try:
            doc = json.loads((directory / _META).read_bytes())
            expected = doc["expected"]
            total = doc["total"]
            if total is not None and (type(total) is not int or total < 0):
                return None
            return cls(
                ref=str(doc["ref"]),
                total=total,
                expected=None if expected is None else Digest.parse(expected),
                started_at=float(doc["started_at"]),
            )
        except (OSError, ValueError, KeyError, TypeError, LayerstoreError):
            return None

    def store(self, directory: Path) -> None:
        """Write ``meta.json`` atomically (not durably: see the module docstring)."""
        doc = {
            "ref": self.ref,
            "total": self.total,
            "expected": None if self.expected is None else str(self.expected),
            "started_at": self.started_at,
        }
        tmp = directory / (_META + ".tmp")
        with open(tmp, "wb") as f:
            f.write(json.dumps(doc, sort_keys=True).encode())
        os.replace(tmp, directory / _META)


def _publish(source: Path, target: Path) -> None:
    """Atomically move a verified, fsynced file into ``blobs/`` and make that durable."""
    if not target.parent.is_dir():
        target.parent.mkdir(exist_ok=True)
        fsync_dir(target.parent.parent)
    os.rename(source, target)
    fsync_dir(target.parent)


def _remove_ingest(directory: Path) -> None:
    """Delete an ingest directory; the caller holds its lock, which goes last."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        if name != _LOCK:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(directory / name)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(directory / _LOCK)
    try:
        os.rmdir(directory)
    except OSError as err:
        # A new writer of the same ref may already have put a fresh lock file in it.
        if err.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
            raise


def _hash_file(path: Path, algorithm: str, length: int) -> Hasher:
    """Hash the first ``length`` bytes of ``path`` in CHUNK-sized reads."""
    hasher = new_hasher(algorithm)
    remaining = length
    with open(path, "rb") as f:
        while remaining > 0:
            chunk = f.read(min(CHUNK, remaining))
            if not chunk:
                break
            hasher.update(chunk)
            remaining -= len(chunk)
    return hasher


def _acquire(directory: Path, ref: str, create: bool) -> io.FileIO:
    """Take the exclusive lock of an ingest directory, creating it if ``create``.

    The returned file holds the lock until closed. ``Unavailable`` if another writer holds
    it; ``NotFound`` if ``create`` is false and there is no ingest.
    """
    lock_path = directory / _LOCK
    for _ in range(_ACQUIRE_ATTEMPTS):
        if create:
            directory.mkdir(exist_ok=True)
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        try:
            fd = os.open(lock_path, flags, 0o644)
        except FileNotFoundError:
            if create:
                continue
            raise NotFound(f"no ingest {ref!r}") from None
        lock = io.FileIO(fd, "r+", closefd=True)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise Unavailable(f"ingest {ref!r} is held by another writer") from None
        # The previous holder may have removed the ingest between our open and our flock.
        try:
            current = os.stat(lock_path)
        except FileNotFoundError:
            current = None
        held = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
            return lock
        lock.close()
        if not create:
            raise NotFound(f"no ingest {ref!r}")
    raise Unavailable(f"ingest {ref!r} is being created and removed concurrently; retry")


def _check_digest(value: object, what: str = "digest") -> Digest:
    if not isinstance(value, Digest):
        raise InvalidArgument(
            f"{what} must be a Digest, not {type(value).__name__} {value!r} (use Digest.parse)"
        )
    return value


def _check_optional_digest(value: object, what: str) -> Digest | None:
    return None if value is None else _check_digest(value, what)


def _check_size(value: object, what: str) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise InvalidArgument(f"{what} must be a non-negative int, not {value!r}")
    return value


def _check_ref(ref: object) -> str:
    if not isinstance(ref, str) or not ref:
        raise InvalidArgument(f"ingest ref must be a non-empty string, not {ref!r}")
    try:
        ref.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"ingest ref {ref!r} is not valid UTF-8") from None
    return ref


class LocalWriter:
    """A writer holding one ingest of a :class:`LocalStore` (obtained from ``writer()``).

    Bytes go straight to ``data`` (no buffering in memory) and are hashed as they pass, in the
    algorithm of the digest expected at open (sha256 when none was given).
    """

    def __init__(self, directory: Path, lock: io.FileIO, meta: _Meta, blobs: Path) -> None:
        self._directory = directory
        self._lock = lock
        self._meta = meta
        self._blobs = blobs
        self._algorithm = meta.expected.algorithm if meta.expected else "sha256"
        self._data = io.FileIO(directory / _DATA, "a")
        try:
            self._offset = os.fstat(self._data.fileno()).st_size
            self._written_back = self._offset
            self._hasher = _hash_file(directory / _DATA, self._algorithm, self._offset)
        except BaseException:
            self._data.close()
            raise
        self._state: Literal["open", "closed", "finished"] = "open"

    @property
    def ref(self) -> str:
        """The ingest's name."""
        return self._meta.ref

    @property
    def offset(self) -> int:
        """How many bytes the ingest holds."""
        return self._offset

    def write(self, data: bytes, /) -> int:
        """Append ``data`` to the ingest; return its length."""
        self._require_open("write to")
        try:
            view = memoryview(data).cast("B")
        except TypeError:
            raise InvalidArgument(
                f"ingest {self.ref!r}: write() takes bytes, not {type(data).__name__}"
            ) from None
        written = 0
        try:
            while written < len(view):
                written += self._data.write(view[written:]) or 0
        finally:
            # Keep the hash and offset in step with what reached the file, even on error.
            self._hasher.update(view[:written])
            self._offset += written
        if self._offset - self._written_back >= WRITEBACK_STEP:
            # Start the disk writes while the bytes stream in: the commit's fsync stays short.
            start_writeback(self._data.fileno(), self._written_back,
                            self._offset - self._written_back)
            self._written_back = self._offset
        return written

    def digest(self) -> Digest:
        """The digest of what has been written so far."""
        return Digest(self._algorithm, self._hasher.hexdigest())

    def commit(self, size: int | None = None, expected: Digest | None = None) -> Digest:
        """Verify size and digest, then publish the blob; return its digest.

        ``size``/``expected`` default to the ``total``/``expected`` given when the ingest was
        opened. On a mismatch the ingest is removed and nothing is stored. Committing a digest
        that already exists succeeds and discards the ingest. The writer is closed afterwards.
        """
        self._require_open("commit")
        size = _check_size(size, "commit size")
        expected = _check_optional_digest(expected, "expected digest")
        if size is None:
            size = self._meta.total
        if expected is None:
            expected = self._meta.expected
        if size is not None and size != self._offset:
            self._discard()
            raise SizeMismatch(
                f"ingest {self.ref!r}: expected size {size}, got {self._offset} bytes"
            )
        actual = self._final_digest(expected.algorithm if expected else self._algorithm)
        if expected is not None and actual != expected:
            self._discard()
            raise DigestMismatch(f"ingest {self.ref!r}: expected {expected}, got {actual}")
        target = self._blobs / actual.algorithm / actual.hex
        try:
            os.fsync(self._data.fileno())
            self._data.close()
            if not target.exists():
                _publish(self._directory / _DATA, target)
        except BaseException:
            self._release()
            raise
        self._discard()
        return actual

    def close(self) -> None:
        """Release the ingest without committing; it stays resumable. Idempotent."""
        if self._state != "open":
            return
        try:
            if not self._data.closed:
                os.fsync(self._data.fileno())
        finally:
            self._release()

    def abort(self) -> None:
        """Discard the ingest (a no-op once committed or discarded)."""
        if self._state == "open":
            self._discard()
        elif self._state == "closed":
            directory, ref = self._directory, self.ref
            try:
                lock = _acquire(directory, ref, create=False)
            except NotFound:
                return
            try:
                _remove_ingest(directory)
            finally:
                lock.close()
            self._state = "finished"

    def __enter__(self) -> LocalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalWriter(ref={self.ref!r}, offset={self._offset}, state={self._state})"

    def _require_open(self, action: str) -> None:
        if self._state != "open":
            raise FailedPrecondition(
                f"cannot {action} ingest {self.ref!r}: the writer is {self._state}"
            )

    def _final_digest(self, algorithm: str) -> Digest:
        if algorithm == self._algorithm:
            return self.digest()
        hasher = _hash_file(self._directory / _DATA, algorithm, self._offset)
        return Digest(algorithm, hasher.hexdigest())

    def _release(self) -> None:
        self._state = "closed"
        try:
            self._data.close()
        finally:
            self._lock.close()

    def _discard(self) -> None:
        self._state = "finished"
        try:
            self._data.close()
            _remove_ingest(self._directory)
        finally:
            self._lock.close()


class LocalStore:
    """A content-addressable blob store in a directory; see the module docstring."""

    def __init__(self, root: Path | str, ingest_root: Path | str | None = None) -> None:
        """Open (creating if needed) the store in ``root``; ingests live in ``root/ingest``
        unless ``ingest_root`` names another directory on the same filesystem (as for an
        OCI image layout, whose directory holds nothing but blobs and indexes)."""
        self._root = Path(root)
        self._blobs = self._root / "blobs"
        self._ingests = Path(ingest_root) if ingest_root is not None else self._root / "ingest"
        try:
            self._blobs.mkdir(parents=True, exist_ok=True)
            self._ingests.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InvalidArgument(
                f"cannot use {str(root)!r} as a content store: {err.strerror}"
            ) from None

    @property
    def root(self) -> Path:
        """The store's directory."""
        return self._root

    def __repr__(self) -> str:
        return f"LocalStore({str(self._root)!r})"

    # Committed blobs.

    def info(self, digest: Digest) -> Info:
        """The committed blob ``digest``; ``NotFound`` if absent."""
        try:
            st = os.stat(self._blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None
        return Info(digest=digest, size=st.st_size, created_at=st.st_mtime)

    def exists(self, digest: Digest) -> bool:
        """Whether ``digest`` is committed."""
        return self._blob_path(digest).is_file()

    def path(self, digest: Digest) -> Path:
        """The file of the committed blob ``digest`` (read it, never modify it)."""
        path = self._blob_path(digest)
        if not path.is_file():
            raise NotFound(f"blob {digest} not found")
        return path

    def reader(self, digest: Digest, offset: int = 0) -> BinaryIO:
        """An open binary file positioned at ``offset`` in the blob; the caller closes it.

        ``NotFound`` if absent; ``InvalidArgument`` if ``offset`` is beyond the blob's end.
        """
        path = self._blob_path(digest)
        offset = _check_size(offset, "read offset") or 0
        try:
            f = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None
        size = os.fstat(f.fileno()).st_size
        if offset > size:
            f.close()
            raise InvalidArgument(
                f"offset {offset} is beyond the end of blob {digest} ({size} bytes)"
            )
        f.seek(offset)
        return f

    def walk(self) -> Iterator[Info]:
        """Every committed blob, in no particular order."""
        for algorithm in ALGORITHMS:
            try:
                entries = list(os.scandir(self._blobs / algorithm))
            except FileNotFoundError:
                continue
            for entry in entries:
                try:
                    digest = Digest(algorithm, entry.name)
                    st = entry.stat(follow_symlinks=False)
                except (InvalidArgument, FileNotFoundError):
                    continue
                if entry.is_file(follow_symlinks=False):
                    yield Info(digest=digest, size=st.st_size, created_at=st.st_mtime)

    def delete(self, digest: Digest) -> None:
        """Remove a committed blob; open readers keep working. ``NotFound`` if absent."""
        try:
            os.unlink(self._blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    # Ingests.

    def writer(
        self, ref: str, total: int | None = None, expected: Digest | None = None
    ) -> LocalWriter:
        """Open or resume the ingest ``ref``; ``Unavailable`` if another writer holds it.

        A resumed ingest continues at the bytes already on disk; ``total``/``expected`` fill
        in what the ingest did not record yet, and contradicting what it did record is a
        ``FailedPrecondition``.
        """
        ref = _check_ref(ref)
        total = _check_size(total, "total")
        expected = _check_optional_digest(expected, "expected digest")
        directory = self._ingest_dir(ref)
        lock = _acquire(directory, ref, create=True)
        try:
            meta = _Meta.load(directory)
            if meta is None:
                meta = _Meta(ref=ref, total=total, expected=expected, started_at=time.time())
                meta.store(directory)
            else:
                merged = _merge(meta, total, expected)
                if merged != meta:
                    merged.store(directory)
                meta = merged
            return LocalWriter(directory, lock, meta, self._blobs)
        except BaseException:
            lock.close()
            raise

    def status(self, ref: str) -> IngestStatus:
        """Progress of the ingest ``ref``; ``NotFound`` if there is none."""
        ref = _check_ref(ref)
        status = self._status_of(self._ingest_dir(ref))
        if status is None:
            raise NotFound(f"no ingest {ref!r}")
        return status

    def list_statuses(self) -> list[IngestStatus]:
        """Every ingest on disk, sorted by ref."""
        statuses = []
        for entry in os.scandir(self._ingests):
            if entry.is_dir(follow_symlinks=False):
                status = self._status_of(Path(entry.path))
                if status is not None:
                    statuses.append(status)
        return sorted(statuses, key=lambda s: s.ref)

    def abort(self, ref: str) -> None:
        """Discard the ingest ``ref``; ``NotFound`` if none, ``Unavailable`` if it is held."""
        ref = _check_ref(ref)
        directory = self._ingest_dir(ref)
        if not directory.is_dir():
            raise NotFound(f"no ingest {ref!r}")
        lock = _acquire(directory, ref, create=False)
        try:
            found = _Meta.load(directory) is not None
            _remove_ingest(directory)
        finally:
            lock.close()
        if not found:
            raise NotFound(f"no ingest {ref!r}")

    # Internals.

    def _blob_path(self, digest: Digest) -> Path:
        digest = _check_digest(digest)
        return self._blobs / digest.algorithm / digest.hex

    def _ingest_dir(self, ref: str) -> Path:
        return self._ingests / hashlib.sha256(ref.encode("utf-8")).hexdigest()

    def _status_of(self, directory: Path) -> IngestStatus | None:
        meta = _Meta.load(directory)
        if meta is None:
            return None
        try:
            st = os.stat(directory / _DATA)
            offset, updated_at = st.st_size, st.st_mtime
        except FileNotFoundError:
            offset, updated_at = 0, meta.started_at
        return IngestStatus(
            ref=meta.ref,
            offset=offset,
            total=meta.total,
            expected=meta.expected,
            started_at=meta.started_at,
            updated_at=updated_at,
        )


def _merge(meta: _Meta, total: int | None, expected: Digest | None) -> _Meta:
    """Combine what a resuming writer declares with what the ingest recorded."""
    if total is not None and meta.total is not None and total != meta.total:
        raise FailedPrecondition(
            f"ingest {meta.ref!r} was started with total {meta.total}, not {total}"
        )
    if expected is not None and meta.expected is not None and expected != meta.expected:
        raise FailedPrecondition(
            f"ingest {meta.ref!r} was started expecting {meta.expected}, not {expected}"
        )
    return replace(
        meta,
        total=meta.total if meta.total is not None else total,
        expected=meta.expected if meta.expected is not None else expected,
    )
