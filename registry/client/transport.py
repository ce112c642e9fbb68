"""HTTP to one registry: TLS trust, scheme choice, authentication and retries.

One :class:`Transport` (one ``httpx.Client``) per registry host, safe to share between
threads. TLS trusts the system CAs plus every ``*.crt`` in ``certs_dir/HOST[:PORT]/`` and
presents the client certificate pairs (``*.cert`` + ``*.key``) found there. HTTPS comes
first; a registry listed as insecure is also tried over plain HTTP, and its certificate is
not verified. The first request pings ``/v2/`` to learn the scheme and the authentication
challenge, so later requests carry credentials or a cached token from the start; a 401
(say, a token that expired on the way) fetches a new token once and sends the request again.
Connection failures, 5xx and 429 answers are retried with exponential backoff when the
caller says the request may be repeated.
"""

from __future__ import annotations

import base64
import contextlib
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar
from urllib.parse import urljoin, urlsplit

import httpx

from registry.client.auth import (
    Challenge,
    Token,
    TokenCache,
    merge_scopes,
    parse_challenges,
)
from registry.client.credentials import Credentials, CredentialSource, DockerConfig
from registry.client.errors import ConfigurationError, Unreachable
from registry.client.reference import DEFAULT_REGISTRY, DOCKER_HUB_API
from registry.client.responses import error_for, login_hint
from registry.client.settings import ClientSettings
from registry.client.tokens import request_token

Body = bytes | Callable[[], Iterable[bytes]]
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "pybuild"
#: What OpenSSL says when the other end answers a TLS hello in plain HTTP.
_PLAIN_HTTP_SIGNS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE",
                               "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG"})
_T = TypeVar("_T")


def tls_context(host: str, settings: ClientSettings) -> ssl.SSLContext:
    """The TLS client context for ``host``: system CAs, ``certs_dir/host/*.crt`` and the
    client certificates there; no verification for an insecure registry."""
    if settings.is_insecure(host):
        # nothing is verified: the system CAs (slow to load) are not needed
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context()
    directory = settings.certs_dir / host
    if not directory.is_dir():
        return context
    for ca in sorted(directory.glob("*.crt")):
        try:
            context.load_verify_locations(cafile=str(ca))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigurationError(f"cannot load CA certificate {ca}: {exc}") from None
    for cert in sorted(directory.glob("*.cert")):
        key = cert.with_suffix(".key")
        if not key.is_file():
            raise ConfigurationError(f"client certificate {cert} has no key {key.name} "
                                     "next to it")
        try:
            context.load_cert_chain(str(cert), str(key))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigurationError(f"cannot load client certificate {cert}: {exc}") from None
    for key in sorted(directory.glob("*.key")):
        if not key.with_suffix(".cert").is_file():
            raise ConfigurationError(f"client key {key} has no certificate "
                                     f"{key.with_suffix('.cert').name} next to it")
    return context


def _root_cause(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while True:
        nxt = exc.__cause__ or exc.__context__
        if nxt is None or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt


_UNKNOWN_HOST = ("Name or service not known", "nodename nor servname",
                 "No address associated with hostname")


def _is_unknown_host(exc: BaseException) -> bool:
    """A host name that does not resolve: retrying within seconds will not change that."""
    return any(text in str(exc) for text in _UNKNOWN_HOST)


def _is_tls_failure(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return True
        cause = cause.__cause__ or cause.__context__
    return "SSL" in str(exc) or "certificate" in str(exc)


def describe_failure(exc: BaseException) -> str:
    """A short human cause for a transport exception."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    root = _root_cause(exc)
    if isinstance(root, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({root.verify_message or root})"
    if isinstance(root, ssl.SSLError):
        reason = root.reason or str(root)
        hint = ": the server may speak plain HTTP" if reason in _PLAIN_HTTP_SIGNS else ""
        return f"TLS handshake failed ({reason}{hint})"
    if isinstance(root, ConnectionRefusedError):
        return "connection refused"
    if isinstance(root, OSError) and root.strerror:
        return root.strerror
    return str(root) or str(exc) or type(exc).__name__


class Transport:
    """HTTP to one registry (see the module docstring); close it when done.

    ``registry`` names it for credentials and messages (``docker.io`` is reached at
    ``registry-1.docker.io``); ``url`` fixes the base URL (a mirror). ``stats`` counts
    token requests, tokens renewed after a 401 and retried requests.
    """

    def __init__(self, registry: str, settings: ClientSettings | None = None, *,
                 credentials: CredentialSource | None = None, url: str | None = None) -> None:
        self.settings = settings or ClientSettings()
        self.registry = registry
        self._credentials_source = credentials or DockerConfig(self.settings.docker_config)
        if url is not None:
            self._bases: tuple[str, ...] = (url.rstrip("/"),)
        else:
            host = DOCKER_HUB_API if registry == DEFAULT_REGISTRY else registry
            bases = [f"https://{host}"]
            if self.settings.is_insecure(host):
                bases.append(f"http://{host}")
            self._bases = tuple(bases)
        self.host = urlsplit(self._bases[0]).netloc
        self._base: str | None = None
        self._challenge: Challenge | None = None
        self._ping_lock = threading.Lock()
        self._tokens = TokenCache()
        self._credentials: Credentials | None = None
        self._credentials_loaded = False
        self._credentials_lock = threading.Lock()
        timeout = httpx.Timeout(self.settings.timeout)
        self._client = httpx.Client(verify=tls_context(self.host, self.settings),
                                    timeout=timeout, follow_redirects=True,
                                    headers={"User-Agent": USER_AGENT})
        self._stats_lock = threading.Lock()
        self.stats = {"token_requests": 0, "renewals": 0, "retries": 0}

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        """The URL the registry answered on (after the first request)."""
        return self._ping()

    def url(self, path: str) -> str:
        """An absolute URL for ``path`` (``/v2/…``) or a ``Location`` header value."""
        return urljoin(self._ping() + "/", path.lstrip("/")) if not path.startswith(
            ("http://", "https://")) else path

    @property
    def credentials(self) -> Credentials | None:
        """The credentials stored for this registry (looked up once)."""
        with self._credentials_lock:
            if not self._credentials_loaded:
                self._credentials = self._credentials_source.lookup(self.registry)
                self._credentials_loaded = True
            return self._credentials

    def use_credentials(self, credentials: Credentials | None) -> None:
        """Use ``credentials`` instead of the stored ones (``pybuild login``)."""
        with self._credentials_lock:
            self._credentials = credentials
            self._credentials_loaded = True

    def _count(self, name: str) -> None:
        with self._stats_lock:
            self.stats[name] += 1

    # -- retries -----------------------------------------------------------------------------

    def retrying(self, action: Callable[[], _T], what: str, *, retry: bool = True,
                 url: str = "") -> _T:
        """Run ``action`` (one HTTP exchange), retrying transport failures with backoff
        while the policy allows; Unreachable naming ``url`` when it gives up. TLS failures
        and unknown host names are not retried."""
        policy = self.settings.retry
        deadline = time.monotonic() + policy.total
        failures = 0
        while True:
            try:
                return action()
            except httpx.TransportError as exc:
                failures += 1
                delay = policy.delay(failures)
                if (not retry or _is_tls_failure(exc) or _is_unknown_host(exc)
                        or failures >= policy.attempts
                        or time.monotonic() + delay > deadline):
                    raise self.unreachable(exc, url or what, failures) from None
                self._count("retries")
                time.sleep(delay)

    def unreachable(self, exc: BaseException, url: str, attempts: int = 1) -> Unreachable:
        """The error for a transport failure talking to ``url``."""
        cause = describe_failure(exc)
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        hint = ""
        if _is_tls_failure(exc):
            hint = (f"; to trust a private CA put it in {self.settings.certs_dir / self.host}"
                    f"/ca.crt, and for a registry speaking plain HTTP or with a self-signed "
                    f"certificate list {self.host} in insecure-registries")
        return Unreachable(f"cannot reach registry {self.registry} at {url}: {cause}"
                           f"{tries}{hint}", registry=self.registry, url=url)

    # -- the first contact ----------------------------------------------------------------------

    def probe(self) -> None:
        """Make the first contact (``GET /v2/``) now, in one attempt without retries; a
        failure is raised, and the next request tries again as usual."""
        with self._ping_lock:
            if self._base is None:
                self._base, self._challenge = self._ping_once()

    def _ping(self) -> str:
        if self._base is not None:
            return self._base
        with self._ping_lock:
            if self._base is None:
                self._base, self._challenge = self.retrying(self._ping_once, "/v2/",
                                                            url=self._bases[0] + "/v2/")
        return self._base

    def _ping_once(self) -> tuple[str, Challenge | None]:
        last: httpx.TransportError | None = None
        for base in self._bases:
            try:
                response = self._client.get(base + "/v2/")
            except httpx.TransportError as exc:
                last = last if last is not None and _is_tls_failure(last) else exc
                continue
            if response.status_code in RETRY_STATUSES:
                last = httpx.RemoteProtocolError(
                    f"{base}/v2/ answered {response.status_code}")
                continue
            return base, self._pick(parse_challenges(
                response.headers.get_list("www-authenticate")))
        assert last is not None
        raise last

    @staticmethod
    def _pick(challenges: Sequence[Challenge]) -> Challenge | None:
        for scheme in ("bearer", "basic"):
            for challenge in challenges:
                if challenge.scheme == scheme:
                    return challenge
        return None

    # -- authorization ----------------------------------------------------------------------

    def _basic(self) -> str | None:
        creds = self.credentials
        if creds is None or not creds.username:
            return None
        text = f"{creds.username}:{creds.password}".encode()
        return "Basic " + base64.b64encode(text).decode()

    def _authorization(self, scopes: Sequence[str]) -> str | None:
        """The ``Authorization`` header for a request needing ``scopes``, as far as the
        registry's challenge is known."""
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return self._basic()
        key = TokenCache.key(challenge, merge_scopes(scopes))
        token = self._tokens.get(key)
        if token is None:
            token = self._fetch_token(challenge, key[2])
            self._tokens.put(key, token)
        return f"Bearer {token.value}"

    def _renewed(self, challenge: Challenge, scopes: Sequence[str],
                 refused: str | None) -> str:
        """A new token after a 401: for ``scopes`` plus what the challenge asks, also kept
        for ``scopes`` alone, replacing the ``refused`` one."""
        own = TokenCache.key(challenge, merge_scopes(scopes))
        if refused is not None:
            self._tokens.drop(own, refused)
            self._count("renewals")
        wanted = merge_scopes(scopes, challenge.scopes)
        token = self._fetch_token(challenge, wanted)
        self._tokens.put(TokenCache.key(challenge, wanted), token)
        self._tokens.put(own, token)
        return f"Bearer {token.value}"

    def _fetch_token(self, challenge: Challenge, scopes: Sequence[str]) -> Token:
        self._count("token_requests")
        return request_token(self, challenge, scopes)

    @property
    def http(self) -> httpx.Client:
        """The underlying HTTP client (for the token endpoint)."""
        return self._client

    # -- requests ------------------------------------------------------------------------------

    def _send(self, method: str, url: str, *, params: Mapping[str, str] | None,
              headers: Mapping[str, str] | None, body: Body | None, authorization: str | None,
              stream: bool) -> httpx.Response:
        all_headers = dict(headers or {})
        if authorization:
            all_headers["Authorization"] = authorization
        content = body() if callable(body) else body
        target = httpx.URL(url)
        if params:
            # httpx would replace the query a Location header may carry (distribution's
            # _state); it has to be kept.
            target = target.copy_merge_params(dict(params))
        request = self._client.build_request(method, target, headers=all_headers,
                                             content=content)
        return self._client.send(request, stream=stream)

    def _exchange(self, method: str, url: str, scopes: Sequence[str],
                  params: Mapping[str, str] | None, headers: Mapping[str, str] | None,
                  body: Body | None, stream: bool) -> httpx.Response:
        authorization = self._authorization(scopes)
        response = self._send(method, url, params=params, headers=headers, body=body,
                              authorization=authorization, stream=stream)
        if response.status_code != 401:
            return response
        challenge = self._pick(parse_challenges(response.headers.get_list("www-authenticate")))
        if challenge is None:
            return response
        retry_with: str | None
        if challenge.scheme == "bearer":
            refused = authorization[7:] if authorization and authorization.startswith(
                "Bearer ") else None
            self._challenge = challenge
            retry_with = self._renewed(challenge, scopes, refused)
        else:
            self._challenge = challenge
            retry_with = self._basic()
            if retry_with is None or retry_with == authorization:
                return response
        response.read()
        response.close()
        return self._send(method, url, params=params, headers=headers, body=body,
                          authorization=retry_with, stream=stream)

    def request(self, method: str, path: str, *, what: str, scopes: Sequence[str] = (),
                params: Mapping[str, str] | None = None,
                headers: Mapping[str, str] | None = None, body: Body | None = None,
                ok: Iterable[int] = (200,), retry: bool = True,
                stream: bool = False) -> httpx.Response:
        """Send a request to ``path`` (``/v2/…`` or an absolute URL) with the
        authorization ``scopes`` need; return the response when its status is in ``ok``,
        raise the matching ClientError otherwise (``what`` names the object in messages).
        A callable ``body`` is called again for each attempt. With ``stream`` the caller
        reads and closes the response."""
        url = self.url(path)
        accepted = frozenset(ok)
        policy = self.settings.retry
        deadline = time.monotonic() + policy.total
        failures = 0
        while True:
            response = self.retrying(
                lambda: self._exchange(method, url, scopes, params, headers, body, stream),
                what, retry=retry, url=url)
            if response.status_code in accepted:
                return response
            failures += 1
            delay = max(policy.delay(failures), _retry_after(response, policy.max_delay))
            if (retry and response.status_code in RETRY_STATUSES
                    and failures < policy.attempts and time.monotonic() + delay <= deadline):
                response.close()
                self._count("retries")
                time.sleep(delay)
                continue
            with contextlib.suppress(httpx.HTTPError):
                response.read()
            response.close()
            raise error_for(response, registry=self.registry, what=what, method=method,
                            has_credentials=self.credentials is not None)

    def login_hint(self) -> str:
        """What to run to store credentials for this registry."""
        return login_hint(self.registry)


def _retry_after(response: httpx.Response, cap: float) -> float:
    value = response.headers.get("retry-after", "")
    try:
        return min(float(value), cap) if value else 0.0
    except ValueError:
        return 0.0


def open_transport(registry: str, settings: ClientSettings | None = None, *,
                   credentials: CredentialSource | None = None,
                   url: str | None = None) -> Transport:
    """A transport to ``registry`` (``HOST[:PORT]`` or ``docker.io``), or to a mirror at
    ``url``."""
    return Transport(registry, settings, credentials=credentials, url=url)


def mirror_registry(url: str) -> str:
    """The ``HOST[:PORT]`` of a mirror URL (for certificates and credentials)."""
    return urlsplit(url).netloc


__all__ = ["Body", "Transport", "mirror_registry", "open_transport", "tls_context"]
