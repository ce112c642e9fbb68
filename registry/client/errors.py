"""The errors of the distribution client.

Every failure the client reports on purpose is a :class:`ClientError` whose message names
the registry, the repository or reference, the digest and, when the registry sent one, the
spec's error code, so that a command can print it as one line.
"""

from __future__ import annotations


class ClientError(Exception):
    """Base of every error raised by :mod:`registry.client`."""

    def __init__(self, message: str, *, registry: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.registry = registry

    def __str__(self) -> str:
        return self.message


class InvalidReference(ClientError, ValueError):
    """An image reference does not follow docker's grammar."""


class ConfigurationError(ClientError):
    """A client setting, ``daemon.json``-style file or ``config.json`` is malformed, or a
    credential helper failed."""


class Unauthorized(ClientError):
    """The registry refused the credentials (or needs some and none are known); ``reason``
    is the message without the advice to log in."""

    def __init__(self, message: str, *, registry: str = "", reason: str = "") -> None:
        super().__init__(message, registry=registry)
        self.reason = reason or message


class Denied(ClientError):
    """The credentials are fine but do not allow the operation (spec code ``DENIED``)."""


class NotFound(ClientError):
    """The repository, manifest or blob is unknown to the registry."""


class DigestMismatch(ClientError):
    """Content from the registry did not match the digest or size it was asked for."""

    def __init__(self, message: str, *, registry: str = "", digest: str = "",
                 repository: str = "") -> None:
        super().__init__(message, registry=registry)
        self.digest = digest
        self.repository = repository


class Unreachable(ClientError):
    """The registry could not be reached (connection, TLS, timeout), also after retries."""

    def __init__(self, message: str, *, registry: str = "", url: str = "") -> None:
        super().__init__(message, registry=registry)
        self.url = url


class ProtocolError(ClientError):
    """The registry answered with an error the client cannot recover from, or with
    something the distribution spec does not allow; ``code`` is the spec's error code."""

    def __init__(self, message: str, *, registry: str = "", code: str = "",
                 status: int = 0) -> None:
        super().__init__(message, registry=registry)
        self.code = code
        self.status = status


class PlatformNotFound(NotFound):
    """An index lists no image for the wanted platform; the message lists those it has."""


__all__ = [
    "ClientError", "ConfigurationError", "Denied", "DigestMismatch", "InvalidReference",
    "NotFound", "PlatformNotFound", "ProtocolError", "Unauthorized", "Unreachable",
]
