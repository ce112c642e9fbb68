"""``GET /api/v1/systeminfo``: what this registry is and how it authenticates (open to
anonymous callers, like Harbor's), and ``GET /api/v1/me``: who the caller is."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from fastapi import APIRouter

from registry.api.deps import ServicesDep, UserCaller

router = APIRouter(tags=["system"])


def _version() -> str:
    try:
        return metadata.version("pybuild")
    except metadata.PackageNotFoundError:
        return "unknown"


@router.get("/systeminfo", summary="The registry's version and authentication")
def systeminfo(svc: ServicesDep) -> dict[str, Any]:
    """The registry's version, its authentication mode and metadata backend."""
    settings = svc.settings
    return {"version": _version(), "api_version": "v1", "auth_mode": settings.auth_mode,
            "read_only": settings.read_only,
            "metadata": "postgresql" if settings.metadata_url else "sqlite"}


@router.get("/me", summary="The authenticated caller")
def me(caller: UserCaller) -> dict[str, Any]:
    """The caller's name, groups, whether it is a system admin and how it authenticated."""
    return {"name": caller.principal.subject, "groups": sorted(caller.principal.groups),
            "admin": caller.admin, "via": caller.via}
