"""The client's settings: insecure registries, mirrors, TLS trust, credentials file,
concurrency, retries and upload sizes.

:func:`load_settings` reads a JSON file shaped like docker's ``daemon.json``; only the
registry keys matter here and the others (a real ``daemon.json`` holds many) are ignored::

    {"registry-mirrors": ["https://mirror.example"],
     "insecure-registries": ["registry.local:5000", "10.0.0.0/8"]}
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from registry.client.errors import ConfigurationError

DEFAULT_DAEMON_CONFIG = Path("/etc/pybuild/daemon.json")
DAEMON_CONFIG_ENV = "PYBUILD_DAEMON_CONFIG"
DEFAULT_CERTS_DIR = Path("/etc/docker/certs.d")
MIB = 1024 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a request that failed in a way worth retrying
    (connection errors, 5xx, 429): at most ``attempts`` tries in all, waiting
    ``base_delay`` seconds doubled after each failure (capped at ``max_delay``), and never
    starting a new try after ``total`` seconds."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0
    total: float = 120.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigurationError(f"retry attempts must be at least 1, not {self.attempts}")
        if self.base_delay < 0 or self.max_delay < 0 or self.total < 0:
            raise ConfigurationError("retry delays must not be negative")

    def delay(self, failures: int) -> float:
        """The pause after the ``failures``-th failure (1-based)."""
        return min(self.max_delay, self.base_delay * (2 ** max(failures - 1, 0)))


@dataclass(frozen=True)
class ClientSettings:
    """What the client needs to know besides the image reference.

    ``insecure_registries`` lists ``HOST[:PORT]`` entries and CIDR ranges (as docker's
    ``--insecure-registry``; with ``loopback_insecure``, the default, loopback addresses
    and ``localhost`` count too, as docker's built-in 127.0.0.0/8 and ::1/128 entries do):
    for those, TLS certificates are not verified and plain HTTP is
    tried when HTTPS fails. ``mirrors`` are base URLs tried, in order, before Docker Hub for
    ``docker.io`` images. ``certs_dir`` holds ``HOST[:PORT]/*.crt`` CA certificates and
    ``*.cert``/``*.key`` client certificate pairs; ``docker_config`` is the credentials file
    (``None``: ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``).
    ``max_concurrency`` bounds parallel blob transfers; blobs up to ``monolithic_max`` bytes
    are pushed in one request, larger ones in ``chunk_size`` chunks. ``timeout`` is the
    network timeout in seconds of one read, write or connect.
    """

    insecure_registries: tuple[str, ...] = ()
    loopback_insecure: bool = True
    mirrors: tuple[str, ...] = ()
    certs_dir: Path = DEFAULT_CERTS_DIR
    docker_config: Path | None = None
    max_concurrency: int = 4
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    monolithic_max: int = 8 * MIB
    chunk_size: int = 512 * MIB
    timeout: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "insecure_registries",
                           tuple(_check_insecure(e) for e in self.insecure_registries))
        object.__setattr__(self, "mirrors", tuple(check_mirror(m) for m in self.mirrors))
        object.__setattr__(self, "certs_dir", Path(self.certs_dir))
        if self.max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be at least 1, not "
                                     f"{self.max_concurrency}")
        if self.monolithic_max < 0 or self.chunk_size < 1:
            raise ConfigurationError("monolithic_max must not be negative and chunk_size must "
                                     "be positive")
        if self.timeout <= 0:
            raise ConfigurationError(f"timeout must be positive, not {self.timeout}")

    def with_changes(self, **changes: Any) -> ClientSettings:
        """A copy with some fields replaced."""
        return replace(self, **changes)

    def is_insecure(self, host: str) -> bool:
        """Whether ``host`` (``HOST[:PORT]``) is insecure: a loopback address or
        ``localhost`` (always, as for docker), or listed by name or by a CIDR range holding
        its address (names are resolved only when ranges are listed)."""
        hostname = _hostname(host)
        if self.loopback_insecure and is_loopback(hostname):
            return True
        networks = []
        for entry in self.insecure_registries:
            if "/" in entry:
                networks.append(ipaddress.ip_network(entry, strict=False))
            elif entry.lower() in (host.lower(), hostname.lower()):
                return True
        if not networks:
            return False
        return any(address in net for address in _addresses(hostname) for net in networks)


def is_loopback(hostname: str) -> bool:
    """Whether ``hostname`` is ``localhost`` or an address in 127.0.0.0/8 or ::1."""
    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _hostname(host: str) -> str:
    """``host`` without its port (and without IPv6 brackets)."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _addresses(hostname: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(hostname)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(hostname, None, type=socket.SOCK_STREAM)
    except OSError:
        return []
    out = []
    for info in infos:
        try:
            out.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
        except ValueError:
            continue
    return out


def _check_insecure(entry: object) -> str:
    if not isinstance(entry, str) or not entry.strip():
        raise ConfigurationError(f"insecure registry {entry!r} must be HOST[:PORT] or a CIDR "
                                 "range")
    text = entry.strip()
    for scheme in ("http://", "https://"):
        text = text.removeprefix(scheme)
    text = text.rstrip("/")
    if "/" in text:
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ConfigurationError(f"insecure registry {entry!r}: not a CIDR range "
                                     "(like 10.0.0.0/8) nor HOST[:PORT]") from None
        return text
    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if (port and not port.isdigit()) or not host or any(c.isspace() for c in text):
        raise ConfigurationError(f"insecure registry {entry!r} must be HOST[:PORT] or a CIDR "
                                 "range")
    return text


def check_mirror(url: object) -> str:
    """A registry mirror URL, checked (``http(s)://host[:port][/path]``), without a
    trailing slash."""
    if not isinstance(url, str):
        raise ConfigurationError(f"registry mirror {url!r} must be a URL string")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"registry mirror {url!r} must be an http:// or https:// URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigurationError(f"registry mirror {url!r} must not hold credentials, a query "
                                 "or a fragment")
    return url.strip().rstrip("/")


def _string_list(doc: Mapping[str, Any], key: str, source: str) -> tuple[str, ...]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(f"{source}: {key!r} must be a list of strings, not "
                                 f"{json.dumps(value)[:100]}")
    return tuple(value)


def load_settings(path: Path | None = None, *, environ: Mapping[str, str] | None = None,
                  **overrides: Any) -> ClientSettings:
    """Settings from a ``daemon.json``-style file: ``path``, else ``$PYBUILD_DAEMON_CONFIG``,
    else ``/etc/pybuild/daemon.json``. A missing default file means defaults; a missing
    named file, bad JSON or a bad value is a ConfigurationError naming the file.
    ``overrides`` replace fields afterwards (command-line flags)."""
    environ = os.environ if environ is None else environ
    explicit = path is not None or bool(environ.get(DAEMON_CONFIG_ENV))
    path = path or Path(environ.get(DAEMON_CONFIG_ENV) or DEFAULT_DAEMON_CONFIG)
    source = f"client config {str(path)!r}"
    values: dict[str, Any] = {}
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigurationError(f"{source} does not exist") from None
        raw = None
    except OSError as exc:
        raise ConfigurationError(f"{source}: {exc.strerror}") from None
    if raw is not None:
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"{source}: not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ConfigurationError(f"{source}: expected a JSON object")
        values["mirrors"] = _string_list(doc, "registry-mirrors", source)
        values["insecure_registries"] = _string_list(doc, "insecure-registries", source)
        for key in ("max-concurrent-downloads", "max-concurrent-uploads"):
            if key in doc:
                if type(doc[key]) is not int or doc[key] < 1:
                    raise ConfigurationError(f"{source}: {key!r} must be a positive integer")
                values["max_concurrency"] = max(values.get("max_concurrency", 1), doc[key])
    values.update(overrides)
    try:
        return ClientSettings(**values)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{source}: {exc}") from None


__all__ = ["DAEMON_CONFIG_ENV", "DEFAULT_CERTS_DIR", "DEFAULT_DAEMON_CONFIG", "ClientSettings",
           "RetryPolicy", "check_mirror", "load_settings"]
