"""The distribution client: pull and push images, with docker's references, credentials,
TLS trust, mirrors and insecure registries.

    from registry.client import parse_reference, pull, push, load_settings

    settings = load_settings()
    pulled = pull("debian:bookworm", store, settings=settings)
    push(store, pulled.target, "registry.example:5000/team/debian:bookworm", settings)
"""

from __future__ import annotations

from registry.client.catalog import head_manifest, list_tags
from registry.client.credentials import (
    Credentials,
    CredentialSource,
    DockerConfig,
    erase,
    lookup,
    store,
)
from registry.client.errors import (
    ClientError,
    ConfigurationError,
    Denied,
    DigestMismatch,
    InvalidReference,
    NotFound,
    PlatformNotFound,
    ProtocolError,
    Unauthorized,
    Unreachable,
)
from registry.client.login import login, logout
from registry.client.progress import BlobProgress, ProgressCallback
from registry.client.pull import Pulled, default_platform, pull
from registry.client.push import push
from registry.client.reference import Reference, parse_reference
from registry.client.settings import ClientSettings, RetryPolicy, load_settings
from registry.client.transport import Transport, open_transport

__all__ = [
    "BlobProgress", "ClientError", "ClientSettings", "ConfigurationError", "CredentialSource",
    "Credentials", "Denied", "DigestMismatch", "DockerConfig", "InvalidReference", "NotFound",
    "PlatformNotFound", "ProgressCallback", "ProtocolError", "Pulled", "Reference",
    "RetryPolicy", "Transport", "Unauthorized", "Unreachable", "default_platform", "erase",
    "head_manifest", "list_tags", "load_settings", "login", "logout", "lookup",
    "open_transport",
    "parse_reference", "pull", "push", "store",
]
