"""The errors of the pull-through cache: each names the upstream and the setting that
configures it, and maps to one OCI error answer."""

from __future__ import annotations


class ProxyError(Exception):
    """Base of the cache's errors; the message is one line naming the upstream setting."""


class UpstreamUnavailable(ProxyError):
    """The upstream could not be reached or failed (connection, TLS, timeout, 5xx)."""


class UpstreamRefused(ProxyError):
    """The upstream refused the configured credentials, or needs some and none are set."""


class UpstreamInvalid(ProxyError):
    """The upstream answered something the distribution API does not allow (a URL that is
    no registry, a manifest that does not match its digest)."""
