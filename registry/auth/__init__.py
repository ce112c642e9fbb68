"""Authentication and authorization of registry requests."""

from registry.auth.access import (
    ANONYMOUS,
    CATALOG,
    DELETE,
    PULL,
    PUSH,
    AllowAll,
    Authorizer,
    Identity,
    Scope,
)

__all__ = [
    "ANONYMOUS", "CATALOG", "DELETE", "PULL", "PUSH", "AllowAll", "Authorizer", "Identity",
    "Scope",
]
