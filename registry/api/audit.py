"""``GET /api/v1/audit``: the audit log, newest first (system admins), filtered like
``registry audit``: ``project``, ``user`` (``""``: anonymous), ``since`` (an ISO date/time or
a duration such as ``1h``/``7d``) and ``limit``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from registry import audit
from registry.api.deps import AdminCaller, ServicesDep
from registry.api.errors import INVALID
from registry.audit.events import AuditError, AuditQuery, parse_since
from registry.errors import RegistryError

router = APIRouter(tags=["audit"])


@router.get("/audit", summary="The audit log, newest first")
def audit_log(caller: AdminCaller, svc: ServicesDep,
              project: str | None = None, user: str | None = None,
              since: str | None = None,
              limit: Annotated[int, Query(ge=1, le=10000)] = 100) -> list[dict[str, Any]]:
    """Who pushed, pulled, deleted or changed what, when, from where."""
    try:
        when = parse_since(since) if since is not None else None
        selection = AuditQuery(project, user, when, limit)
    except AuditError as exc:
        raise RegistryError(INVALID, str(exc).replace("--", "", 1),
                            detail={"since": since}) from None
    return [e.as_dict() for e in audit.query(svc.settings, selection)]
