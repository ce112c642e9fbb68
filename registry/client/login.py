"""Checking credentials against a registry before storing them (``pybuild login``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from registry.client.credentials import Credentials, DockerConfig
from registry.client.errors import InvalidReference, Unauthorized
from registry.client.reference import DEFAULT_REGISTRY, normalize_registry
from registry.client.settings import ClientSettings
from registry.client.transport import Transport


class _NoCredentials:
    """A credential source that knows nothing (login brings its own)."""

    def lookup(self, registry: str) -> Credentials | None:
        """Nothing is known."""
        return None


def server_name(text: str | None) -> str:
    """The registry a ``login``/``logout`` argument names: ``HOST[:PORT]`` (a URL's scheme
    and path are dropped) or ``docker.io`` (also for no argument)."""
    if not text:
        return DEFAULT_REGISTRY
    value = text.strip()
    if "://" in value:
        value = urlsplit(value).netloc
    value = value.split("/", 1)[0]
    if not value or any(c.isspace() for c in value):
        raise InvalidReference(f"invalid registry server {text!r}: want HOST[:PORT]")
    return normalize_registry(value)


def verify_credentials(registry: str, username: str, password: str,
                       settings: ClientSettings | None = None) -> None:
    """Make an authenticated ``GET /v2/``: basic credentials where the registry asks for
    them, a token from its token service otherwise. Unauthorized when refused."""
    with Transport(registry, settings, credentials=_NoCredentials()) as transport:
        transport.use_credentials(Credentials(username, password))
        try:
            transport.request("GET", "/v2/", what="the registry API")
        except Unauthorized as exc:
            raise Unauthorized(f"login to {registry} as {username!r} failed: {exc.reason}",
                               registry=registry, reason=exc.reason) from None


def login(server: str | None, username: str, password: str,
          settings: ClientSettings | None = None) -> str:
    """Verify the credentials against ``server`` and store them in the docker config
    (``settings.docker_config``); return the registry name they were stored under."""
    settings = settings or ClientSettings()
    registry = server_name(server)
    verify_credentials(registry, username, password, settings)
    DockerConfig(settings.docker_config).store(registry, username, password)
    return registry


def logout(server: str | None, settings: ClientSettings | None = None) -> tuple[str, bool]:
    """Erase ``server``'s credentials; the registry name and whether any were stored."""
    settings = settings or ClientSettings()
    registry = server_name(server)
    return registry, DockerConfig(settings.docker_config).erase(registry)


__all__ = ["login", "logout", "server_name", "verify_credentials"]
