"""The local Docker engine as an image store, reached through its Engine API on a Unix socket.

The engine is at ``$DOCKER_HOST`` when that is a ``unix://`` address, else at
``/var/run/docker.sock``. Two things are done with it, both streamed:

* an image that neither pybuild's store nor a registry has is read from
  ``GET /images/{name}/get`` as it arrives (see :func:`builder.dockerstream.read_stream`):
  every layer goes into the content store while the next is still on its way;
* a built image is sent to ``POST /images/load`` as a docker-archive produced on the fly by a
  generator (see :func:`builder.dockerstream.archive_chunks`).

Neither side writes a tar of the whole image anywhere.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO
from urllib.parse import quote

import httpx

from builder.errors import BuildError, ImageNotFound

__all__ = ["DEFAULT_SOCKET", "DockerEngine", "DockerEngineError", "EngineAddress",
           "EngineImage", "NoDockerEngine", "NotInDockerEngine", "engine_address", "load_report"]

DEFAULT_SOCKET = "/var/run/docker.sock"
_TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=600.0, pool=10.0)


class DockerEngineError(BuildError):
    """The Docker engine refused or failed a request; the message names the engine."""


class NoDockerEngine(DockerEngineError):
    """No Docker engine answers at the socket (or ``$DOCKER_HOST`` names none pybuild can
    reach)."""


class NotInDockerEngine(ImageNotFound):
    """The Docker engine answers but holds no image by that name."""


@dataclass(frozen=True)
class EngineAddress:
    """Where the engine is: the socket path, and how to name it in messages."""

    socket: str
    where: str


@dataclass(frozen=True)
class EngineImage:
    """What the engine says of one image (``GET /images/{name}/json``)."""

    id: str
    repo_tags: tuple[str, ...]
    os: str
    architecture: str
    variant: str | None


def engine_address() -> EngineAddress:
    """The engine's socket: ``$DOCKER_HOST`` (``unix://`` only), else
    :data:`DEFAULT_SOCKET`."""
    host = os.environ.get("DOCKER_HOST", "").strip()
    if not host:
        return EngineAddress(DEFAULT_SOCKET, DEFAULT_SOCKET)
    if not host.startswith("unix://") or not host[len("unix://"):]:
        raise NoDockerEngine(f"DOCKER_HOST={host}: pybuild reaches the Docker engine through "
                             "a unix:// socket only (unix:///var/run/docker.sock)")
    return EngineAddress(host[len("unix://"):], f"{host} (DOCKER_HOST)")


class DockerEngine:
    """A client of one Docker engine; use as a context manager (it holds a connection)."""

    def __init__(self, address: EngineAddress | None = None) -> None:
        self.address = address or engine_address()
        self._client = httpx.Client(transport=httpx.HTTPTransport(uds=self.address.socket),
                                    base_url="http://docker", timeout=_TIMEOUT)

    def __enter__(self) -> DockerEngine:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._client.close()

    def _unreachable(self, exc: httpx.HTTPError) -> NoDockerEngine:
        text = str(exc) or type(exc).__name__
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, OSError) and cause.strerror:
                text = cause.strerror.lower()
                break
            cause = cause.__cause__ or cause.__context__
        if not os.path.exists(self.address.socket):
            return NoDockerEngine(f"no Docker engine at {self.address.where}: the socket "
                                  "does not exist")
        return NoDockerEngine(f"cannot reach the Docker engine at {self.address.where}: "
                              f"{text}")

    def _failed(self, what: str, response: httpx.Response) -> DockerEngineError:
        try:
            message = json.loads(response.read()).get("message") or ""
        except (ValueError, AttributeError):
            message = ""
        return DockerEngineError(f"Docker engine at {self.address.where}: {what}: "
                                 f"{message or f'HTTP {response.status_code}'}")

    def ping(self) -> None:
        """Check that an engine answers (``GET /_ping``); :class:`NoDockerEngine` if not."""
        try:
            response = self._client.get("/_ping")
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code != 200:
            raise NoDockerEngine(f"no Docker engine at {self.address.where}: /_ping answered "
                                 f"HTTP {response.status_code}")

    def _get_json(self, path: str, what: str) -> object:
        try:
            response = self._client.get(path)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code != 200:
            raise self._failed(what, response)
        try:
            return response.json()
        except ValueError:
            raise DockerEngineError(f"Docker engine at {self.address.where}: {what}: the "
                                    "answer is not JSON") from None

    def image_ids(self) -> list[str]:
        """The IDs of every image the engine holds (``GET /images/json?all=1``)."""
        doc = self._get_json("/images/json?all=1", "list images")
        if not isinstance(doc, list):
            return []
        return [str(item["Id"]) for item in doc if isinstance(item, dict) and "Id" in item]

    def stores_layers_by_chain(self) -> bool:
        """Whether the engine keeps images in its own layer store (a graph driver such as
        overlay2), whose ``docker load`` skips the layers it holds, rather than in
        containerd's image store, which wants every blob of an archive."""
        doc = self._get_json("/info", "info")
        if not isinstance(doc, dict):
            return False
        status = doc.get("DriverStatus") or []
        flat = json.dumps(status)
        return "io.containerd.snapshotter" not in flat and bool(doc.get("Driver"))

    def inspect(self, name: str) -> EngineImage:
        """The engine's image ``name`` (a name, ``name@digest`` or an ID);
        :class:`NotInDockerEngine` when it has none."""
        try:
            response = self._client.get(f"/images/{_path(name)}/json")
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code == 404:
            raise NotInDockerEngine(f"the Docker engine at {self.address.where} has no image "
                                    f"{name!r}")
        if response.status_code != 200:
            raise self._failed(f"inspect {name}", response)
        try:
            doc = response.json()
            return EngineImage(id=str(doc["Id"]), repo_tags=tuple(doc.get("RepoTags") or ()),
                               os=str(doc.get("Os") or "linux"),
                               architecture=str(doc.get("Architecture") or ""),
                               variant=doc.get("Variant") or None)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise DockerEngineError(f"Docker engine at {self.address.where}: inspect {name}: "
                                    "the answer is not an image description") from None

    @contextmanager
    def save(self, name: str) -> Iterator[BinaryIO]:
        """The docker-archive of image ``name`` as a stream read while the engine writes it
        (``GET /images/{name}/get``)."""
        try:
            with self._client.stream("GET", f"/images/{_path(name)}/get") as response:
                if response.status_code == 404:
                    raise NotInDockerEngine(f"the Docker engine at {self.address.where} has "
                                            f"no image {name!r}")
                if response.status_code != 200:
                    raise self._failed(f"save {name}", response)
                raw = _ResponseReader(response.iter_raw(), f"{self.address.where}: save {name}")
                yield io.BufferedReader(raw, buffer_size=1 << 20)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None

    def load(self, chunks: Iterable[bytes]) -> list[str]:
        """Send a docker-archive, given as its successive bytes, to ``POST /images/load``;
        return the engine's report lines (``Loaded image: app:v1``)."""
        try:
            response = self._client.post("/images/load", params={"quiet": "1"},
                                         headers={"Content-Type": "application/x-tar"},
                                         content=iter(chunks))
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._unreachable(exc) from None
        except httpx.HTTPError as exc:
            raise DockerEngineError(f"Docker engine at {self.address.where}: load: the "
                                    f"connection failed while sending the image: {exc}"
                                    ) from None
        if response.status_code != 200:
            raise self._failed("load", response)
        return load_report(response.text, self.address.where)


def _path(name: str) -> str:
    return quote(name, safe="/:@")


def load_report(text: str, where: str) -> list[str]:
    """The report lines of ``/images/load``'s JSON message stream; an error message in it is
    raised."""
    lines: list[str] = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        try:
            doc = json.loads(raw)
        except ValueError:
            lines.append(raw.strip())
            continue
        if not isinstance(doc, dict):
            continue
        error = doc.get("error") or (doc.get("errorDetail") or {}).get("message")
        if error:
            raise DockerEngineError(f"Docker engine at {where}: load: {error}")
        stream = doc.get("stream")
        if isinstance(stream, str) and stream.strip():
            lines.extend(s.strip() for s in stream.splitlines() if s.strip())
    return lines


class _ResponseReader(io.RawIOBase):
    """A raw reader over a response body's chunks; a broken connection is a
    :class:`DockerEngineError`."""

    def __init__(self, chunks: Iterator[bytes], what: str) -> None:
        self._chunks = chunks
        self._what = what
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = memoryview(next(self._chunks))
            except StopIteration:
                return 0
            except httpx.HTTPError as exc:
                raise DockerEngineError(f"Docker engine at {self._what}: the stream broke "
                                        f"off: {exc}") from None
        n = min(len(buf), len(self._pending))
        buf[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n
