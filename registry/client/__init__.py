"""The distribution client: pull and push images, with docker's references, credentials,
TLS trust, mirrors and insecure registries.

    from registry.client import parse_reference, pull, push, load_settings

    settings = load_settings()
    pulled = pull("debian:bookworm", store, settings=settings)
    push(store, pulled.target, "registry.example:5000/team/debian:bookworm", settings)
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

# httpx imports its own command-line client (click, rich, pygments: a fifth of the time a
# push spends importing) whenever those happen to be installed; marking the module absent
# makes httpx skip it, and nothing here uses that client.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

if TYPE_CHECKING:
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


_EXPORTS = {
    "BlobProgress": "registry.client.progress",
    "ClientError": "registry.client.errors",
    "ClientSettings": "registry.client.settings",
    "ConfigurationError": "registry.client.errors",
    "CredentialSource": "registry.client.credentials",
    "Credentials": "registry.client.credentials",
    "Denied": "registry.client.errors",
    "DigestMismatch": "registry.client.errors",
    "DockerConfig": "registry.client.credentials",
    "InvalidReference": "registry.client.errors",
    "NotFound": "registry.client.errors",
    "PlatformNotFound": "registry.client.errors",
    "ProgressCallback": "registry.client.progress",
    "ProtocolError": "registry.client.errors",
    "Pulled": "registry.client.pull",
    "Reference": "registry.client.reference",
    "RetryPolicy": "registry.client.settings",
    "Transport": "registry.client.transport",
    "Unauthorized": "registry.client.errors",
    "Unreachable": "registry.client.errors",
    "default_platform": "registry.client.pull",
    "erase": "registry.client.credentials",
    "head_manifest": "registry.client.catalog",
    "list_tags": "registry.client.catalog",
    "load_settings": "registry.client.settings",
    "login": "registry.client.login",
    "logout": "registry.client.login",
    "lookup": "registry.client.credentials",
    "open_transport": "registry.client.transport",
    "parse_reference": "registry.client.reference",
    "pull": "registry.client.pull",
    "push": "registry.client.push",
    "store": "registry.client.credentials",
}


def __getattr__(name: str) -> Any:
    """Import what is asked for on first use: pulling in the HTTP stack costs a tenth of a
    second that builds served from the local store do not need to pay."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BlobProgress", "ClientError", "ClientSettings", "ConfigurationError", "CredentialSource",
    "Credentials", "Denied", "DigestMismatch", "DockerConfig", "InvalidReference", "NotFound",
    "PlatformNotFound", "ProgressCallback", "ProtocolError", "Pulled", "Reference",
    "RetryPolicy", "Transport", "Unauthorized", "Unreachable", "default_platform", "erase",
    "head_manifest", "list_tags", "load_settings", "login", "logout", "lookup",
    "open_transport",
    "parse_reference", "pull", "push", "store",
]
