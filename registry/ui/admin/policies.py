"""A project's tag immutability and retention rules: its members see them, its maintainers
and admins (and system admins) add and remove them and run retention — a dry run lists what
a run would remove; a run removes it (the blobs go at the next ``registry gc``). Through
:class:`~registry.tagpolicy.service.TagPolicyService`, as ``registry immutable``,
``registry retention`` and ``/api/v1/projects/{project}/…`` do."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from registry.projects.model import MAINTAINER, ProjectInvalid
from registry.tagpolicy.retention import RetentionPlan, RetentionResult
from registry.tagpolicy.rules import ArgumentNames
from registry.tagpolicy.service import TagPolicyService
from registry.ui.admin.common import (
    BASE,
    Flashes,
    act,
    audit_actor,
    field,
    projects,
    refusals,
    require_viewer,
    services,
    show,
)
from registry.ui.admin.projects import project_context
from registry.ui.errors import UINotFound

router = APIRouter()
FORM_NAMES = ArgumentNames(project="project", repositories="repositories", tags="tags",
                           kind="keep", latest="count", days="count")
KINDS = (("latest", "the N most recently pushed"), ("days", "those pushed within N days"),
         ("always", "all"))


def _policy(request: Request) -> TagPolicyService:
    found = services(request).tag_policy
    if found is None:
        raise UINotFound("tag policies are not enabled on this registry")
    return found


def policies_page(request: Request, name: str, flashes: Flashes | None = None,
                  status: int = 200, plan: RetentionPlan | None = None,
                  result: RetentionResult | None = None, **_: Any) -> Response:
    """The project's rules (and a retention plan or run just made)."""
    _who, context = project_context(request, name)
    if not context["is_member"]:
        with refusals():
            projects(request).require(_who.actor(), name, "guest", "read the tag rules of")
    policy = _policy(request)
    with refusals():
        immutable = policy.immutable_rules(name)
        retention = policy.retention_rules(name)
    return show(request, "admin/policies.html", "projects",
                here=f"{BASE}/projects/{name}/policies", flashes=flashes, status=status,
                tab="policies", immutable=immutable, retention=retention, kinds=KINDS,
                plan=plan, result=result, **context)


@router.get("/projects/{name}/policies", include_in_schema=False)
def list_policies(request: Request, name: str) -> Response:
    """The tag rules page."""
    return policies_page(request, name)


@router.post("/projects/{name}/policies", include_in_schema=False)
async def change_policies(request: Request, name: str) -> Response:
    """``op``: add_immutable, remove_immutable, add_retention, remove_retention,
    plan_retention (a dry run) or run_retention."""
    made: dict[str, Any] = {}

    def change(form: dict[str, str]) -> str:
        who = require_viewer(request, f"manage the tag rules of project {name}")
        projects(request).require(who.actor(), name, MAINTAINER,
                                  "manage the tag policies of")
        policy = _policy(request)
        actor = audit_actor(who)
        op = form.get("op", "")
        if op == "add_immutable":
            rule = policy.add_immutable(name, field(form, "repositories", "**") or "**",
                                        field(form, "tags"), FORM_NAMES, actor=actor)
            return f"added {rule.describe()}"
        if op == "remove_immutable":
            policy.remove_immutable(name, field(form, "rule"), actor=actor)
            return f"immutability rule {field(form, 'rule')} removed"
        if op == "add_retention":
            count = field(form, "count", "")
            kept = policy.add_retention(name, field(form, "keep"),
                                        int(count) if count.isdigit() else (count or None),
                                        field(form, "repositories", "**") or "**",
                                        field(form, "tags", "**") or "**", FORM_NAMES,
                                        actor=actor)
            return f"added {kept.describe()}"
        if op == "remove_retention":
            policy.remove_retention(name, field(form, "rule"), actor=actor)
            return f"retention rule {field(form, 'rule')} removed"
        if op in ("plan_retention", "run_retention"):
            meta = services(request).metadata
            plan = policy.plan_retention(meta, name)
            made["plan"] = plan
            if op == "plan_retention":
                return (f"dry run: a retention run would remove {len(plan.removals)} "
                        f"manifest(s) and keep {plan.kept}")
            result = policy.run_retention(meta, plan, actor=actor)
            made["result"] = result
            return (f"retention removed {len(result.removed)} manifest(s), skipped "
                    f"{len(result.skipped)}; run registry gc to free their blobs")
        raise ProjectInvalid(f"op {op[:40]!r} is not an action of this page")

    def page(request: Request, flashes: Flashes | None = None, status: int = 200,
             **_: Any) -> Response:
        return policies_page(request, name, flashes, status, **made)

    return await act(request, page, change)
