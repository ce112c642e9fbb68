"""Blobs of a pull-through cache: fetched once, streamed to the first clients while they
arrive, stored through the storage driver.

One fetch per blob across every server process on one root: the process that takes the
lock ``<spool>/<alg>-<hex>.lock`` (``flock``) fetches; it writes each piece to a staging
object of the driver, ``proxy/staging/...``, and keeps the fetch's state in
``<alg>-<hex>.state`` (JSON: ``starting``, ``fetching`` with the size, ``done``, ``failed``
with the reason, ``missing``). Readers follow a file as it grows: on the filesystem driver
the staging file itself (``proxy/staging/<alg>-<hex>``), on others a spool file
``<spool>/<alg>-<hex>.part`` written beside it. Once the bytes are verified the staging
object is moved to the blob's place (on a filesystem a rename: readers that have the file
open read on) and linked into the repository; the lock and state files are then removed
(later requests find the stored blob). A fetch carries on when the client that started it
goes away, so the others get the whole blob.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from layerstore.digest import CHUNK, Digest
from registry import audit
from registry.audit.events import AuditEvent
from registry.errors import BLOB_UNKNOWN, UNAVAILABLE, RegistryError
from registry.handlers.base import Services
from registry.proxy.counters import ProxyCounters
from registry.proxy.errors import ProxyError, UpstreamInvalid, UpstreamUnavailable
from registry.proxy.manifests import FETCH, UPSTREAM_ERROR, Route
from registry.storage.driver import FileWriter, Reader, StorageDriver
from registry.storage.errors import PathNotFound
from registry.storage.filesystem import FilesystemDriver
from registry.storage.paths import blob_path

log = logging.getLogger("registry.proxy")
POLL = 0.02
#: How long a reader waits for the fetch to make progress before giving up.
STALL = 120.0
STARTING, FETCHING, DONE, FAILED, MISSING = "starting", "fetching", "done", "failed", "missing"


@dataclass(frozen=True)
class FetchState:
    """What the state file says of a fetch."""

    state: str
    size: int = -1
    error: str = ""


class Spool:
    """The files of the fetches of one root (module docstring)."""

    def __init__(self, directory: Path, driver: StorageDriver) -> None:
        self.directory = directory
        self.driver = driver
        self.local = isinstance(driver, FilesystemDriver)
        with contextlib.suppress(OSError):
            directory.mkdir(parents=True, exist_ok=True)

    def _base(self, digest: Digest) -> Path:
        return self.directory / f"{digest.algorithm}-{digest.hex}"

    def staging(self, digest: Digest) -> str:
        """The driver path the bytes are written to while they are fetched (a fixed one on
        a filesystem, where readers follow it)."""
        if isinstance(self.driver, FilesystemDriver):
            return f"proxy/staging/{digest.algorithm}-{digest.hex}"
        return f"proxy/staging/{uuid.uuid4().hex}"

    def part(self, digest: Digest) -> Path:
        """The file readers follow."""
        if isinstance(self.driver, FilesystemDriver):
            return self.driver.local_path(self.staging(digest))
        return self._base(digest).with_suffix(".part")

    def lock_path(self, digest: Digest) -> Path:
        """The lock held by the fetching process."""
        return self._base(digest).with_suffix(".lock")

    def try_lock(self, digest: Digest) -> int | None:
        """The locked descriptor if this caller may fetch now, else ``None``."""
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        try:
            fd = os.open(self.lock_path(digest), flags, 0o600)
        except FileNotFoundError:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path(digest), flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def held(self, digest: Digest) -> bool:
        """Whether a fetch holds the lock now."""
        try:
            fd = os.open(self.lock_path(digest), os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def forget(self, digest: Digest) -> None:
        """Remove the state and lock files of a finished fetch (the fetcher still holds
        the lock): the blob is stored, so nobody fetches it again."""
        for path in (self._base(digest).with_suffix(".state"), self.lock_path(digest)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def read_state(self, digest: Digest) -> FetchState | None:
        """The state file, if there is a readable one."""
        try:
            doc = json.loads(self._base(digest).with_suffix(".state").read_text())
            return FetchState(str(doc["state"]), int(doc.get("size", -1)),
                              str(doc.get("error", "")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write_state(self, digest: Digest, state: FetchState) -> None:
        """Replace the state file atomically."""
        target = self._base(digest).with_suffix(".state")
        tmp = target.with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps({"state": state.state, "size": state.size,
                                   "error": state.error}))
        os.replace(tmp, target)


class BlobFetcher:
    """Fetches blobs of cached repositories into the store (module docstring)."""

    def __init__(self, services: Services, counters: ProxyCounters, spool: Spool) -> None:
        self.services = services
        self.counters = counters
        self.spool = spool

    # Local content.

    def stored_size(self, digest: Digest) -> int | None:
        """The size of the blob's committed bytes, if the store holds them."""
        try:
            return self.services.blobs.driver.stat(blob_path(digest)).size
        except PathNotFound:
            return None

    def link(self, repository: str, digest: Digest) -> int | None:
        """Link stored bytes into ``repository``; their size, or ``None`` if not stored."""
        blobs = self.services.blobs
        with blobs.guard():
            size = self.stored_size(digest)
            if size is not None:
                self.services.metadata.link_blob(repository, digest, size)
            return size

    # Fetching.

    def open(self, route: Route, digest: Digest) -> tuple[int, Reader] | None:
        """Blocking: a reader of the blob's bytes and their size while it is fetched
        (started here unless another request is fetching it), or ``None`` when the store
        holds it now (linked into ``route.local``: serve it as usual). BLOB_UNKNOWN if the
        upstream does not have it, UNAVAILABLE if the upstream fails before sending any."""
        deadline = time.monotonic() + STALL
        while True:
            fd = self.spool.try_lock(digest)
            if fd is not None:
                if self.link(route.local, digest) is not None:
                    os.close(fd)
                    return None
                job = _Fetch(self, route, digest, fd)
                job.start()
                state = job.wait_started()
            else:
                state = self._wait_started(digest, deadline)
            if state is None:
                if self.link(route.local, digest) is not None:
                    return None
                if time.monotonic() > deadline:
                    raise _unavailable(route, f"the fetch of blob {digest} made no progress")
                continue
            if state.state == DONE:
                if self.link(route.local, digest) is not None:
                    return None
                continue
            if state.state == MISSING:
                raise RegistryError(BLOB_UNKNOWN, f"blob {digest} is unknown to repository "
                                    f"{route.remote!r} of upstream {route.upstream.describe()}",
                                    detail={"digest": str(digest)})
            if state.state == FAILED:
                raise _unavailable(route, state.error)
            self.counters.miss("blob")
            return state.size, _SpoolReader(self, route, digest, state.size)

    def _wait_started(self, digest: Digest, deadline: float) -> FetchState | None:
        """The state once another request's fetch is past ``starting``; ``None`` if that
        fetch ended without saying (try again)."""
        while time.monotonic() < deadline:
            state = self.spool.read_state(digest)
            if not self.spool.held(digest):
                return None
            if state is not None and state.state != STARTING:
                return state
            time.sleep(POLL)
        return None

    def fetch(self, route: Route, digest: Digest, started: _Fetch) -> None:
        """Blocking, in the fetching thread: GET the blob upstream, spool, verify, store,
        link. Reports through the state file and ``started``."""
        spool, services = self.spool, self.services
        spool.write_state(digest, FetchState(STARTING))
        try:
            response = route.upstream.open_blob(route.remote, digest)
        except ProxyError as exc:
            self._failed(route, digest, str(exc))
            started.set(FetchState(FAILED, error=str(exc)))
            return
        if response is None:
            spool.write_state(digest, FetchState(MISSING))
            started.set(FetchState(MISSING))
            return
        with contextlib.closing(response):
            length = response.headers.get("content-length", "")
            if not length.isdigit():
                error = (f"upstream {route.upstream.describe()} sent blob {digest} without "
                         "a Content-Length")
                self._failed(route, digest, error)
                started.set(FetchState(FAILED, error=error))
                return
            size = int(length)
            staging = spool.staging(digest)
            with contextlib.suppress(PathNotFound):
                services.blobs.driver.delete(staging)
            writer = services.blobs.driver.writer(staging)
            part = None if spool.local else spool.part(digest)
            out = None
            if part is not None:
                with contextlib.suppress(FileNotFoundError):
                    part.unlink()
                out = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                              0o600)
            state = FetchState(FETCHING, size)
            spool.write_state(digest, state)
            started.set(state)
            try:
                self._copy(route, digest, response, size, out, writer)
                writer.commit()
                with services.blobs.guard():
                    services.blobs.driver.move(staging, blob_path(digest))
                    services.metadata.link_blob(route.local, digest, size)
            except Exception as exc:
                with contextlib.suppress(Exception):
                    writer.cancel()
                with contextlib.suppress(Exception):
                    services.blobs.driver.delete(staging)
                error = str(exc) if isinstance(exc, ProxyError) else (
                    f"storing blob {digest} fetched from upstream "
                    f"{route.upstream.describe()} failed: {exc}")
                self._failed(route, digest, error)
                return
            finally:
                if out is not None:
                    os.close(out)
                if part is not None:
                    with contextlib.suppress(FileNotFoundError):
                        part.unlink()
        spool.write_state(digest, FetchState(DONE, size))
        spool.forget(digest)
        self.counters.fetched(size)
        audit.record(AuditEvent(action=FETCH, repository=route.local, reference=str(digest),
                                digest=str(digest),
                                detail=f"blob of {size} bytes from "
                                       f"{route.upstream.url}/{route.remote}"),
                     services.settings)

    def _copy(self, route: Route, digest: Digest, response: httpx.Response, size: int,
              out: int | None, writer: FileWriter) -> None:
        hasher = hashlib.new(digest.algorithm)
        written = 0
        write = writer.write
        try:
            for chunk in response.iter_bytes(CHUNK):
                written += len(chunk)
                if written > size:
                    raise UpstreamInvalid(f"upstream {route.upstream.describe()} sent more "
                                          f"than the {size} bytes of blob {digest}")
                hasher.update(chunk)
                write(chunk)
                view = memoryview(chunk)
                while out is not None and view:
                    view = view[os.write(out, view):]
        except httpx.TransportError as exc:
            raise route.upstream.read_error(exc) from None
        if written != size:
            raise UpstreamUnavailable(f"upstream {route.upstream.describe()} sent {written} "
                                      f"of the {size} bytes of blob {digest}")
        if hasher.hexdigest() != digest.hex:
            raise UpstreamInvalid(f"upstream {route.upstream.describe()} sent other bytes "
                                  f"than blob {digest} (they hash to "
                                  f"{digest.algorithm}:{hasher.hexdigest()}); nothing stored")

    def _failed(self, route: Route, digest: Digest, error: str) -> None:
        log.error("fetching blob %s of %s: %s", digest, route.local, error)
        self.spool.write_state(digest, FetchState(FAILED, error=error))
        self.counters.error()
        with contextlib.suppress(Exception):
            audit.record(AuditEvent(action=UPSTREAM_ERROR, repository=route.local,
                                    reference=str(digest), digest=str(digest),
                                    detail=error[:500]), self.services.settings)


class _Fetch:
    """One fetch running in its own thread; releases the lock when it ends."""

    def __init__(self, fetcher: BlobFetcher, route: Route, digest: Digest, lock_fd: int
                 ) -> None:
        self.fetcher = fetcher
        self.route = route
        self.digest = digest
        self.lock_fd = lock_fd
        self._started = threading.Event()
        self._state: FetchState | None = None

    def start(self) -> None:
        """Run the fetch in a thread of its own."""
        threading.Thread(target=self._run, name=f"proxy-fetch-{self.digest.hex[:12]}",
                         daemon=True).start()

    def _run(self) -> None:
        try:
            self.fetcher.fetch(self.route, self.digest, self)
        except Exception:
            log.exception("fetching blob %s of %s", self.digest, self.route.local)
        finally:
            os.close(self.lock_fd)
            self._started.set()

    def set(self, state: FetchState) -> None:
        """The fetch is past its start: streaming, or over."""
        self._state = state
        self._started.set()

    def wait_started(self) -> FetchState | None:
        """Block until the fetch streams or ended; its state (``None``: ended unsaid)."""
        self._started.wait()
        return self._state


class _SpoolReader:
    """Reads a blob while it is fetched: from the spool file as it grows, from the store
    once it is there."""

    def __init__(self, fetcher: BlobFetcher, route: Route, digest: Digest, size: int) -> None:
        self.fetcher = fetcher
        self.route = route
        self.digest = digest
        self.size = size
        self.offset = 0
        self._fd: int | None = None
        self._stored: Reader | None = None

    def read(self, size: int = -1, /) -> bytes:
        """The next bytes (waiting for them to arrive); ``b""`` at the end; OSError when
        the fetch failed or stalled."""
        want = self.size - self.offset if size < 0 else min(size, self.size - self.offset)
        if want <= 0:
            return b""
        if self._stored is not None:
            data = self._stored.read(want)
            self.offset += len(data)
            return data
        deadline = time.monotonic() + STALL
        spool = self.fetcher.spool
        while True:
            if self._fd is None:
                with contextlib.suppress(FileNotFoundError):
                    self._fd = os.open(spool.part(self.digest), os.O_RDONLY | os.O_CLOEXEC)
            if self._fd is not None:
                data = os.pread(self._fd, want, self.offset)
                if data:
                    self.offset += len(data)
                    return data
            state = spool.read_state(self.digest)
            if state is not None and state.state == FAILED:
                raise OSError(state.error)
            if (state is None or state.state == DONE) and \
                    self.fetcher.stored_size(self.digest) is not None:
                return self._from_store(want)
            if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
                os.close(self._fd)
                self._fd = None
            elif not spool.held(self.digest):
                if self.fetcher.stored_size(self.digest) is not None:
                    return self._from_store(want)
                raise OSError(f"the fetch of blob {self.digest} from upstream "
                              f"{self.route.upstream.describe()} stopped")
            if time.monotonic() > deadline:
                raise OSError(f"the fetch of blob {self.digest} from upstream "
                              f"{self.route.upstream.describe()} stalled")
            time.sleep(POLL)

    def _from_store(self, want: int) -> bytes:
        try:
            self._stored = self.fetcher.services.blobs.driver.reader(blob_path(self.digest),
                                                                     self.offset)
        except PathNotFound:
            raise OSError(f"blob {self.digest} vanished from the store") from None
        return self.read(want)

    def close(self) -> None:
        """Release the files."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._stored is not None:
            self._stored.close()
            self._stored = None


def _unavailable(route: Route, reason: str) -> RegistryError:
    return RegistryError(UNAVAILABLE, reason or f"upstream {route.upstream.describe()} failed",
                         headers={"Retry-After": "5"})
