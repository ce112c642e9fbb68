"""The management pages of the web UI, at ``/ui/admin/``: projects with their usage
charts, members and roles, settings and quota (:mod:`.projects`); robot accounts
(:mod:`.robots`); tag immutability and retention rules (:mod:`.policies`); webhooks and
their deliveries (:mod:`.webhooks`); users, the access rules and one's own CLI secrets
(:mod:`.users`); garbage collection's last runs (:mod:`.gcpage`); the audit log and a
project's activity (:mod:`.auditlog`).

Each page reads and changes the registry through the same services as the management API
and the ``registry`` commands (:mod:`registry.projects`, :mod:`registry.robots`,
:mod:`registry.tagpolicy`, :mod:`registry.webhooks`, :mod:`registry.audit`), which check
what the viewer may do; a refused action shows the service's one-line reason. Every form
carries the session's CSRF token (:mod:`.common`). :data:`router` holds every page; the UI
includes it under ``/ui/admin``.
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter

PAGE_MODULES: tuple[str, ...] = (
    "registry.ui.admin.overview",
    "registry.ui.admin.projects",
    "registry.ui.admin.robots",
    "registry.ui.admin.policies",
    "registry.ui.admin.webhooks",
    "registry.ui.admin.users",
    "registry.ui.admin.gcpage",
    "registry.ui.admin.auditlog",
)


def admin_router() -> APIRouter:
    """One router holding the pages of every module of :data:`PAGE_MODULES`."""
    found = APIRouter()
    for name in PAGE_MODULES:
        found.include_router(importlib.import_module(name).router)
    return found


router = admin_router()
