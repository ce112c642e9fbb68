"""Validation of the mirror-mode settings (``proxy_*``), with errors naming the setting."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from registry.config import ConfigError

if TYPE_CHECKING:
    from registry.config import Settings


class ProxyUrlError(ValueError):
    """An upstream URL is malformed; the message says how."""


def check_upstream_url(url: str) -> str:
    """``url`` without a trailing ``/`` if it is an ``http(s)://HOST[:PORT]`` URL without
    credentials, path, query or fragment; ProxyUrlError otherwise."""
    if not isinstance(url, str):
        raise ProxyUrlError(f"must be an http(s) URL, not {url!r}")
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError as exc:
        raise ProxyUrlError(f"{url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProxyUrlError(f"{url!r} must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ProxyUrlError(f"{parts.hostname!r}: credentials do not go in the URL "
                            "(use the username and password settings)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ProxyUrlError(f"{url!r} must name the registry's root only "
                            "(https://HOST[:PORT]), without a path or query")
    return f"{parts.scheme}://{parts.netloc}"


def check_proxy_settings(settings: Settings) -> None:
    """ConfigError naming the ``proxy_*`` setting that is malformed."""
    remote = settings.proxy_remote
    if remote:
        try:
            clean = check_upstream_url(remote)
        except ProxyUrlError as exc:
            raise ConfigError(f"proxy_remote: {exc}") from None
        object.__setattr__(settings, "proxy_remote", clean)
    elif settings.proxy_username or settings.proxy_password:
        raise ConfigError("proxy_username/proxy_password are set but proxy_remote is not: "
                          "credentials need an upstream")
    if bool(settings.proxy_username) != bool(settings.proxy_password):
        raise ConfigError("proxy_username and proxy_password go together: give both or "
                          "neither")
    if settings.proxy_ttl < 0:
        raise ConfigError(f"proxy_ttl must not be negative (0: revalidate tags on every "
                          f"request), not {settings.proxy_ttl}")
