"""The storage driver seam: a small key/value filesystem that blob storage runs on.

Shaped like CNCF distribution's ``storagedriver.StorageDriver``. Paths are ``/``-separated
relative keys (``blobs/sha256/<hex>``, ``uploads/<uuid>/data``) made of ``[A-Za-z0-9._-]``
components; a "directory" exists while something is stored below it.

Lifecycle of content written through a driver::

    writer(path)                       -> FileWriter (new, empty)
      write(b) ... write(b)            bytes accumulate; ``size`` counts them
      close()                          pause: ``state()`` is what resuming needs
    writer(path, append=True, state=s) -> the same content, ``size`` bytes long, in any process
      commit()                         the content at ``path`` is whole and durable
      (or cancel()                     everything written is discarded)

Before ``commit`` the content at ``path`` may be absent or partial, so a caller that needs a
blob to appear only when complete writes it elsewhere and ``move``\\ s it into place (``move``
is atomic on a filesystem; on S3 the destination object appears whole or not at all).
Drivers are used from worker threads; every method may block. A backend failure is
:class:`~registry.storage.errors.BackendUnavailable`, never a library exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from registry.storage.errors import InvalidPath

_COMPONENT = re.compile(r"[A-Za-z0-9._-]+")


def check_path(path: str) -> str:
    """``path`` if it is a valid driver path; ``InvalidPath`` otherwise."""
    if not isinstance(path, str) or not path or len(path) > 1024:
        raise InvalidPath(f"invalid storage path {path!r}")
    for part in path.split("/"):
        if not _COMPONENT.fullmatch(part) or part in (".", ".."):
            raise InvalidPath(f"invalid storage path {path!r}: bad component {part!r}")
    return path


@dataclass(frozen=True)
class FileInfo:
    """What :meth:`StorageDriver.stat` knows of a path."""

    path: str
    size: int
    modified: float
    is_dir: bool = False


class Reader(Protocol):
    """A stream of stored bytes (a file object's ``read``/``close``)."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes (all that is left when ``size`` is -1); ``b""`` at the end."""
        ...

    def close(self) -> None:
        """Release the stream."""
        ...


class FileWriter(Protocol):
    """Content being written to one path; see the module docstring for the lifecycle."""

    @property
    def size(self) -> int:
        """How many bytes the content holds so far."""
        ...

    def write(self, data: bytes) -> int:
        """Append ``data``; the number of bytes taken (all of them)."""
        ...

    def state(self) -> Mapping[str, str]:
        """What :meth:`StorageDriver.writer` needs to resume this content elsewhere (valid
        after :meth:`close`)."""
        ...

    def close(self) -> None:
        """Make what was written resumable and release this writer."""
        ...

    def commit(self) -> None:
        """Make the content at the path whole and durable; the writer is done."""
        ...

    def cancel(self) -> None:
        """Discard everything written; the writer is done."""
        ...


class StorageDriver(Protocol):
    """A backend for registry storage (filesystem, S3); see the module docstring."""

    name: str

    def get_content(self, path: str) -> bytes:
        """The whole content at ``path`` (meant for small objects); ``PathNotFound``."""
        ...

    def put_content(self, path: str, data: bytes) -> None:
        """Store ``data`` at ``path`` atomically and durably, replacing what was there."""
        ...

    def reader(self, path: str, offset: int = 0) -> Reader:
        """A stream of the content at ``path`` from ``offset``; ``PathNotFound``,
        ``InvalidOffset`` past the end."""
        ...

    def writer(self, path: str, append: bool = False,
               state: Mapping[str, str] | None = None) -> FileWriter:
        """A writer of ``path``: new content, or (``append``) the content a previous writer
        left with ``state``; ``PathNotFound`` if there is none to resume."""
        ...

    def stat(self, path: str) -> FileInfo:
        """Size and modification time of a file, or ``is_dir`` for a directory;
        ``PathNotFound``."""
        ...

    def list(self, path: str) -> list[str]:
        """The full paths of the direct children of directory ``path`` (``""``: the top),
        sorted; ``PathNotFound`` if there are none."""
        ...

    def walk(self, path: str) -> Iterator[FileInfo]:
        """Every file below directory ``path`` (``""``: all), in no particular order."""
        ...

    def move(self, source: str, dest: str) -> None:
        """Move a file to ``dest``, replacing what was there; ``PathNotFound``."""
        ...

    def delete(self, path: str) -> None:
        """Delete a file or a whole directory; ``PathNotFound`` if nothing is there."""
        ...

    def redirect_url(self, path: str, expires: int = 1200) -> str | None:
        """A URL a client may GET the content from directly, or ``None`` if the driver
        serves no such thing."""
        ...
