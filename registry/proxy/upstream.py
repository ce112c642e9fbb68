"""The upstream registry of a cache, over the distribution client of
:mod:`registry.client` (token or basic authentication, TLS trust of ``/etc/docker/certs.d``,
loopback registries as insecure, as docker does).

Every call blocks (run it in a worker thread) and raises a :mod:`registry.proxy.errors`
error naming ``setting`` (``proxy_remote``, or the project whose proxy it is); an object the
upstream does not have is ``None``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

from layerstore.digest import Digest
from layerstore.errors import InvalidArgument
from registry.client.auth import repository_scope
from registry.client.credentials import Credentials
from registry.client.errors import (
    ClientError,
    Denied,
    DigestMismatch,
    NotFound,
    ProtocolError,
    Unauthorized,
    Unreachable,
)
from registry.client.manifests import ACCEPT, FetchedManifest, fetch_manifest
from registry.client.settings import ClientSettings, RetryPolicy
from registry.client.transport import Transport
from registry.proxy.errors import UpstreamInvalid, UpstreamRefused, UpstreamUnavailable

T = TypeVar("T")
#: Fail fast: a client waiting on a mirror should get the cached answer or a 503 quickly.
RETRY = RetryPolicy(attempts=2, base_delay=0.2, max_delay=1.0, total=10.0)
TIMEOUT = 30.0


@dataclass(frozen=True)
class UpstreamManifest:
    """What a HEAD of a manifest tells: digest, media type and size."""

    digest: Digest
    media_type: str
    size: int


class StaticCredentials:
    """The one user name and password configured for an upstream."""

    def __init__(self, username: str, password: str) -> None:
        self._credentials = Credentials(username, password) if username else None

    def lookup(self, registry: str) -> Credentials | None:
        """The configured credentials, whatever the registry."""
        return self._credentials


class Upstream:
    """One upstream registry at ``url`` (see the module docstring); ``setting`` names where
    it is configured, for messages. Safe to share between threads."""

    def __init__(self, url: str, *, username: str = "", password: str = "",
                 setting: str = "proxy_remote",
                 client_settings: ClientSettings | None = None) -> None:
        self.url = url.rstrip("/")
        self.setting = setting
        self.has_credentials = bool(username)
        settings = client_settings or ClientSettings(retry=RETRY, timeout=TIMEOUT)
        host = httpx.URL(self.url).netloc.decode()
        self.transport = Transport(host, settings, url=self.url,
                                   credentials=StaticCredentials(username, password))

    def close(self) -> None:
        """Close the connections."""
        self.transport.close()

    def describe(self) -> str:
        """``setting url`` for messages."""
        return f"{self.setting} {self.url}"

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Unreachable as exc:
            raise UpstreamUnavailable(f"upstream {self.describe()} is unreachable: "
                                      f"{_cause(exc)}") from None
        except (Unauthorized, Denied) as exc:
            given = ("refused the credentials of" if self.has_credentials
                     else "needs credentials; none are set in")
            where = ("proxy_username/proxy_password" if self.setting == "proxy_remote"
                     else f"{self.setting} credentials")
            raise UpstreamRefused(f"upstream {self.describe()} {given} {where}: "
                                  f"{exc}") from None
        except DigestMismatch as exc:
            raise UpstreamInvalid(f"upstream {self.describe()}: {exc}") from None
        except ProtocolError as exc:
            if exc.status >= 500 or exc.status == 429:
                raise UpstreamUnavailable(f"upstream {self.describe()} failed: "
                                          f"{exc}") from None
            raise UpstreamInvalid(f"upstream {self.describe()}: {exc}") from None

    def check(self) -> None:
        """Make the first contact (``GET /v2/``) and, with credentials, have them accepted;
        raises as every call does."""
        def ping() -> None:
            try:
                self.transport.probe()
            except httpx.TransportError as exc:
                raise self.transport.unreachable(exc, self.url + "/v2/") from None
            response = self.transport.request("GET", "/v2/", what="the API root",
                                              ok=(200, 401, 404))
            if response.status_code == 404 or (
                    response.headers.get("docker-distribution-api-version") is None
                    and response.status_code != 200):
                raise UpstreamInvalid(f"upstream {self.describe()} is no registry: GET /v2/ "
                                      f"answered {response.status_code}")
            if response.status_code == 401:
                raise Unauthorized(f"GET /v2/ answered 401 "
                                   f"({response.headers.get('www-authenticate', '')})",
                                   registry=self.url)
        self._call(ping)

    def head_manifest(self, repository: str, reference: str) -> UpstreamManifest | None:
        """The digest, type and size of a manifest by tag or digest; ``None`` if unknown."""
        def head() -> UpstreamManifest | None:
            try:
                response = self.transport.request(
                    "HEAD", f"/v2/{repository}/manifests/{reference}",
                    what=f"manifest {repository}:{reference}",
                    scopes=(repository_scope(repository, "pull"),),
                    headers={"Accept": ACCEPT})
            except NotFound:
                return None
            try:
                digest = Digest.parse(response.headers.get("docker-content-digest", ""))
                size = int(response.headers.get("content-length", ""))
            except (InvalidArgument, ValueError):
                raise UpstreamInvalid(
                    f"upstream {self.describe()} answered HEAD of manifest {repository}:"
                    f"{reference} without a Docker-Content-Digest and Content-Length") from None
            media_type = response.headers.get("content-type", "").split(";")[0].strip()
            return UpstreamManifest(digest, media_type, size)
        return self._call(head)

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest | None:
        """A manifest by tag or digest, verified; ``None`` if unknown."""
        def get() -> FetchedManifest | None:
            try:
                return fetch_manifest(self.transport, repository, reference,
                                      what=f"{repository}:{reference}")
            except NotFound:
                return None
        return self._call(get)

    def head_blob(self, repository: str, digest: Digest) -> int | None:
        """The size of a blob of ``repository``; ``None`` if unknown."""
        def head() -> int | None:
            try:
                response = self.transport.request(
                    "HEAD", f"/v2/{repository}/blobs/{digest}",
                    what=f"blob {digest} of {repository}",
                    scopes=(repository_scope(repository, "pull"),))
            except NotFound:
                return None
            value = response.headers.get("content-length", "")
            return int(value) if value.isdigit() else None
        return self._call(head)

    def tags(self, repository: str, n: int | None, last: str | None
             ) -> tuple[list[str], bool] | None:
        """One page of ``repository``'s tags and whether more follow; ``None`` if the
        repository is unknown."""
        params = {k: v for k, v in (("n", None if n is None else str(n)), ("last", last))
                  if v is not None}

        def get() -> tuple[list[str], bool] | None:
            try:
                response = self.transport.request(
                    "GET", f"/v2/{repository}/tags/list", what=f"the tags of {repository}",
                    scopes=(repository_scope(repository, "pull"),), params=params)
            except NotFound:
                return None
            try:
                tags = response.json().get("tags") or []
            except ValueError:
                raise UpstreamInvalid(f"upstream {self.describe()} sent the tags of "
                                      f"{repository} as something else than JSON") from None
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise UpstreamInvalid(f"upstream {self.describe()} sent malformed tags of "
                                      f"{repository}")
            return tags, "link" in response.headers
        return self._call(get)

    def open_blob(self, repository: str, digest: Digest) -> httpx.Response | None:
        """A streaming GET of a blob (the caller reads and closes it); ``None`` if
        unknown."""
        def get() -> httpx.Response | None:
            try:
                return self.transport.request(
                    "GET", f"/v2/{repository}/blobs/{digest}",
                    what=f"blob {digest} of {repository}",
                    scopes=(repository_scope(repository, "pull"),), stream=True)
            except NotFound:
                return None
        return self._call(get)

    def read_error(self, exc: BaseException) -> UpstreamUnavailable:
        """The error for a transfer that broke while reading a blob."""
        with contextlib.suppress(Exception):
            return UpstreamUnavailable(f"upstream {self.describe()} broke off a transfer: "
                                       f"{_cause(self.transport.unreachable(exc, self.url))}")
        return UpstreamUnavailable(f"upstream {self.describe()} broke off a transfer: {exc}")


def _cause(exc: ClientError) -> str:
    text = str(exc)
    marker = ": "
    return text.split(marker, 1)[1] if marker in text else text
