"""``/api/v1/projects/{project}/immutabletagrules`` and ``.../retentions``: the tag policy
rules of a project (list, add, remove) and retention runs (``dry_run`` lists what a run
would remove), over :class:`~registry.tagpolicy.service.TagPolicyService`, the service the
``registry immutable`` and ``registry retention`` commands call.

Who may manage them: the project's maintainers and project admins, and system admins (the
config's ``admins``; everyone on a registry without authentication); its members (any role)
may list them. A project that does not exist is 404 NOT_FOUND.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from registry.api.deps import Caller, ServicesDep, UserCaller
from registry.api.errors import INVALID, NOT_FOUND
from registry.api.projects import actor, answer, project_service
from registry.errors import RegistryError
from registry.handlers.base import Services
from registry.projects.model import GUEST, MAINTAINER
from registry.tagpolicy.errors import InvalidRule, TagPolicyError, UnknownProject, UnknownRule
from registry.tagpolicy.retention import Removal
from registry.tagpolicy.rules import ArgumentNames
from registry.tagpolicy.service import TagPolicyService

router = APIRouter(tags=["tag policies"])
API_NAMES = ArgumentNames(project="project", repositories="repositories", tags="tags",
                          kind="kind", latest="count", days="count")


class ImmutableRuleIn(BaseModel):
    """A new immutability rule: the repositories (path after the project) and tags it
    protects, as patterns (``*``, ``**``, ``?``, ``{a,b}``)."""

    repositories: str = Field("**", description="repository pattern (after the project)")
    tags: str = Field(description="tag pattern, e.g. 'v*'")


class RetentionRuleIn(BaseModel):
    """A new retention rule: of the manifests with a tag matching ``tags`` in the matching
    repositories, keep the ``count`` most recently pushed (``latest``), those pushed within
    ``count`` days (``days``) or all (``always``)."""

    repositories: str = Field("**", description="repository pattern (after the project)")
    tags: str = Field("**", description="tag pattern")
    kind: str = Field(description="latest, days or always")
    count: int | None = Field(None, description="N of latest, D of days")


def _policy(svc: Services) -> TagPolicyService:
    if svc.tag_policy is None:
        raise RegistryError(NOT_FOUND, "tag policies are not enabled on this registry")
    return svc.tag_policy


def _require(caller: Caller, svc: Services, project: str, minimum: str, doing: str) -> None:
    """The caller must hold ``minimum`` in ``project`` (system admins always do); 404 for
    a project that does not exist, 403 DENIED saying which role it needs."""
    service = project_service(svc)
    answer(caller, lambda: service.require(actor(caller), project, minimum, doing))


def _manager(caller: Caller, svc: Services, project: str) -> None:
    _require(caller, svc, project, MAINTAINER, "manage the tag policies of")


def _reader(caller: Caller, svc: Services, project: str) -> None:
    _require(caller, svc, project, GUEST, "read the tag policies of")


def _error(err: TagPolicyError) -> RegistryError:
    code = NOT_FOUND if isinstance(err, UnknownRule | UnknownProject) else INVALID
    return RegistryError(code, str(err))


def _removal(removal: Removal) -> dict[str, Any]:
    return {"repository": removal.repository, "digest": str(removal.digest),
            "tags": list(removal.tags), "reason": removal.reason}


@router.get("/projects/{project}/immutabletagrules", summary="Immutability rules")
def list_immutable(project: str, caller: UserCaller, svc: ServicesDep) -> list[dict[str, Any]]:
    """The immutability rules of a project (for its members)."""
    _reader(caller, svc, project)
    try:
        return [rule.to_json() for rule in _policy(svc).immutable_rules(project)]
    except InvalidRule as err:
        raise _error(err) from None


@router.post("/projects/{project}/immutabletagrules", status_code=201,
             summary="Add an immutability rule")
def add_immutable(project: str, body: ImmutableRuleIn, caller: UserCaller,
                  svc: ServicesDep) -> dict[str, Any]:
    """Add an immutability rule; 400 INVALID naming the field if a pattern is malformed."""
    _manager(caller, svc, project)
    try:
        return _policy(svc).add_immutable(project, body.repositories, body.tags,
                                          API_NAMES, actor=caller.audited).to_json()
    except TagPolicyError as err:
        raise _error(err) from None


@router.delete("/projects/{project}/immutabletagrules/{rule_id}", status_code=204,
               summary="Remove an immutability rule")
def remove_immutable(project: str, rule_id: str, caller: UserCaller,
                     svc: ServicesDep) -> Response:
    """Remove an immutability rule; 404 NOT_FOUND for an unknown id."""
    _manager(caller, svc, project)
    try:
        _policy(svc).remove_immutable(project, rule_id, actor=caller.audited)
    except TagPolicyError as err:
        raise _error(err) from None
    return Response(status_code=204)


@router.get("/projects/{project}/retentions", summary="Retention rules")
def list_retention(project: str, caller: UserCaller, svc: ServicesDep) -> list[dict[str, Any]]:
    """The retention rules of a project (for its members)."""
    _reader(caller, svc, project)
    try:
        return [rule.to_json() for rule in _policy(svc).retention_rules(project)]
    except InvalidRule as err:
        raise _error(err) from None


@router.post("/projects/{project}/retentions", status_code=201,
             summary="Add a retention rule")
def add_retention(project: str, body: RetentionRuleIn, caller: UserCaller,
                  svc: ServicesDep) -> dict[str, Any]:
    """Add a retention rule; 400 INVALID naming the field on bad input."""
    _manager(caller, svc, project)
    try:
        return _policy(svc).add_retention(project, body.kind, body.count, body.repositories,
                                          body.tags, API_NAMES,
                                          actor=caller.audited).to_json()
    except TagPolicyError as err:
        raise _error(err) from None


@router.delete("/projects/{project}/retentions/{rule_id}", status_code=204,
               summary="Remove a retention rule")
def remove_retention(project: str, rule_id: str, caller: UserCaller,
                     svc: ServicesDep) -> Response:
    """Remove a retention rule; 404 NOT_FOUND for an unknown id."""
    _manager(caller, svc, project)
    try:
        _policy(svc).remove_retention(project, rule_id, actor=caller.audited)
    except TagPolicyError as err:
        raise _error(err) from None
    return Response(status_code=204)


@router.post("/projects/{project}/retentions/executions", summary="Run retention")
def run_retention(project: str, caller: UserCaller, svc: ServicesDep,
                  dry_run: bool = False) -> dict[str, Any]:
    """Remove the project's manifests no retention rule keeps (``dry_run``: only list
    them). The blobs they free are collected by the next ``registry gc``."""
    _manager(caller, svc, project)
    policy = _policy(svc)
    try:
        planned = policy.plan_retention(svc.metadata, project)
    except TagPolicyError as err:
        raise _error(err) from None
    answer: dict[str, Any] = {"dry_run": dry_run, "kept": planned.kept,
                              "planned": [_removal(r) for r in planned.removals]}
    if not dry_run:
        result = policy.run_retention(svc.metadata, planned, actor=caller.audited)
        answer["removed"] = [_removal(r) for r in result.removed]
        answer["skipped"] = [_removal(r) for r in result.skipped]
    return answer
