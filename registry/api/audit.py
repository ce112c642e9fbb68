"""``GET /api/v1/audit``: the audit log, newest first, filtered like ``registry audit``:
``project``, ``user`` (``""``: anonymous), ``since`` (an ISO date/time or a duration such as
``1h``/``7d``) and ``limit``. System admins read all of it; a project's maintainers and admins
read the project's events (with ``project`` given)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from registry import audit
from registry.api.deps import ServicesDep, UserCaller, denied
from registry.api.errors import INVALID
from registry.api.projects import actor, answer, project_service
from registry.audit.events import AuditError, AuditQuery, parse_since
from registry.errors import RegistryError
from registry.projects.model import MAINTAINER

router = APIRouter(tags=["audit"])


@router.get("/audit", summary="The audit log, newest first")
def audit_log(caller: UserCaller, svc: ServicesDep,
              project: str | None = None, user: str | None = None,
              since: str | None = None,
              limit: Annotated[int, Query(ge=1, le=10000)] = 100) -> list[dict[str, Any]]:
    """Who pushed, pulled, deleted or changed what, when, from where."""
    if not caller.admin:
        if project is None:
            raise denied(f"access denied: {caller.name} is not a system admin; name a "
                         "project of which it is a maintainer or admin (?project=)")
        service = project_service(svc)
        answer(caller, lambda: service.require(actor(caller), project, MAINTAINER,
                                               "read the audit log of"))
    try:
        when = parse_since(since) if since is not None else None
        selection = AuditQuery(project, user, when, limit)
    except AuditError as exc:
        raise RegistryError(INVALID, str(exc).replace("--", "", 1),
                            detail={"since": since}) from None
    return [e.as_dict() for e in audit.query(svc.settings, selection)]
