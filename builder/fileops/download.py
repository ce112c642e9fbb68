"""Remote sources of ADD: an ``http://`` or ``https://`` URL downloaded to a scratch file.

The body is streamed to disk and hashed on the way (never held in memory). As in BuildKit,
the file is named after the last component of the URL path (``__unnamed__`` when there is
none), gets mode 0600 and, when the response has a ``Last-Modified`` header, that time as
its mtime. ``--checksum=sha256:<hex>`` is verified before the file is used.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import tempfile
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from builder.errors import DockerfileError
from layerstore.digest import CHUNK

__all__ = ["Checksum", "Downloaded", "download", "is_git_source", "is_url", "parse_checksum",
           "url_filename"]

CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 300.0
_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class Checksum:
    """An expected content digest such as ``sha256:<64 hex digits>``."""

    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


@dataclass(frozen=True)
class Downloaded:
    """A downloaded file: where it is, the name it gets, its mtime (ns) if the server gave
    one."""

    path: Path
    name: str
    mtime_ns: int | None


def is_url(source: str) -> bool:
    """True for an ``http://`` or ``https://`` source."""
    return source.startswith(("http://", "https://"))


def is_git_source(source: str) -> bool:
    """True for sources BuildKit would clone as Git repositories."""
    if source.startswith(("git@", "git://", "ssh://")):
        return True
    if is_url(source):
        path = urlsplit(source).path
        return path.endswith(".git") or path.endswith(".git/")
    return False


def parse_checksum(text: str) -> Checksum:
    """Parse ``--checksum``; only content digests (``sha256:…``) apply to URLs."""
    algorithm, sep, hexpart = text.partition(":")
    size = _ALGORITHMS.get(algorithm)
    if not sep or size is None or len(hexpart) != size or not _HEX.fullmatch(hexpart):
        raise DockerfileError(f"invalid checksum {text!r}: expected sha256:<64 hex digits>")
    return Checksum(algorithm, hexpart)


def url_filename(url: str) -> str:
    """The file name BuildKit gives a URL: the last component of its decoded path."""
    path = unquote(urlsplit(url).path).rstrip("/")
    name = posixpath.basename(path)
    return name if name not in ("", ".", "..") else "__unnamed__"


def _last_modified(value: str | None) -> int | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return int(when.timestamp()) * 1_000_000_000


def download(url: str, scratch: Path, *, checksum: Checksum | None = None) -> Downloaded:
    """Download ``url`` into a new file below ``scratch``.

    An HTTP error status, a network failure or a checksum mismatch raises
    :class:`DockerfileError` naming the URL.
    """
    fd, name = tempfile.mkstemp(prefix="download-", dir=scratch)
    path = Path(name)
    hasher = hashlib.new(checksum.algorithm if checksum else "sha256")
    import httpx  # imported on first use: most builds download nothing

    timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
    try:
        with (os.fdopen(fd, "wb") as out,
              httpx.Client(follow_redirects=True, timeout=timeout) as client,
              client.stream("GET", url) as response):
            if response.status_code >= 400:
                raise DockerfileError(
                    f"downloading {url}: HTTP {response.status_code} "
                    f"{response.reason_phrase}".rstrip())
            for chunk in response.iter_bytes(CHUNK):
                hasher.update(chunk)
                out.write(chunk)
            mtime_ns = _last_modified(response.headers.get("last-modified"))
        os.chmod(path, 0o600)
    except httpx.HTTPError as exc:
        path.unlink(missing_ok=True)
        raise DockerfileError(f"downloading {url}: {exc or type(exc).__name__}") from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if checksum is not None and hasher.hexdigest() != checksum.hex:
        path.unlink(missing_ok=True)
        raise DockerfileError(f"checksum mismatch for {url}: expected {checksum}, "
                              f"got {checksum.algorithm}:{hasher.hexdigest()}")
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return Downloaded(path, url_filename(url), mtime_ns)
