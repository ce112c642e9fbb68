"""``/api/v1/projects``: projects, their members and their quota usage, through
:class:`~registry.projects.service.ProjectService` (the one the ``registry project``
commands use; it checks what the caller may do).

====================================================  ===================================
``GET    /projects``                                  the projects the caller may see
``POST   /projects`` {name, public, quota, proxy}     create (system admins)
``GET    /projects/{name}``                           record, members, usage
``PATCH  /projects/{name}`` {public, quota}           change (quota: system admins)
``DELETE /projects/{name}``                           delete an empty project
``GET    /projects/{name}/members``                   members and roles
``POST   /projects/{name}/members`` {member, role}    add a member or change its role
``DELETE /projects/{name}/members/{member}``          remove a member
``GET    /projects/{name}/usage``                     bytes held, repositories, quota
====================================================  ===================================

``quota`` is a number of bytes or a size such as ``"10GiB"``; ``null`` means no limit.
``proxy`` (with ``proxy_username`` and ``proxy_password``) makes a proxy-cache project of the
registry at that URL (:mod:`registry.proxy.projects`); a project's record shows its ``proxy``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.responses import Response

from registry.api.deps import AnyCaller, Caller, ServicesDep, UserCaller, denied, unauthorized
from registry.api.errors import CONFLICT, INVALID, NOT_FOUND
from registry.audit import change_recorder
from registry.errors import RegistryError
from registry.handlers.base import Services
from registry.projects.model import (
    ProjectDenied,
    ProjectError,
    ProjectExists,
    ProjectInvalid,
    ProjectNotEmpty,
    ProjectNotFound,
    parse_size,
)
from registry.projects.service import (
    Actor,
    ProjectService,
    member_dict,
    project_dict,
    view_dict,
)
from registry.proxy.projects import attach_checked, proxy_of_body, read_proxy

router = APIRouter(tags=["projects"])
T = TypeVar("T")


class ProjectCreate(BaseModel):
    """A new project."""

    name: str = Field(description="the first path segment of its repositories")
    public: bool = Field(False, description="anonymous clients may pull")
    quota: int | str | None = Field(None, description="bytes, a size such as '10GiB', or "
                                    "null for no limit")
    proxy: str | None = Field(None, description="a proxy-cache project of the registry at "
                              "this URL")
    proxy_username: str = Field("", description="user name for the proxy's upstream")
    proxy_password: str = Field("", description="password for the proxy's upstream")


class ProjectUpdate(BaseModel):
    """The fields to change (absent: unchanged)."""

    public: bool | None = None
    quota: int | str | None = Field(None, description="bytes, a size, or null for no limit")


class MemberAdd(BaseModel):
    """A member to add, or whose role to change."""

    member: str = Field(description="a user name, or @group")
    role: str = Field(description="guest, developer, maintainer or admin")


def project_service(svc: Services) -> ProjectService:
    """The project service over the server's stores (sharing the authorizer's cache),
    recording its changes in the server's audit log."""
    roles = svc.projects
    if roles is None:
        raise RegistryError(NOT_FOUND, "this registry has no project store")
    logins = getattr(svc.authorizer, "logins", None)
    return ProjectService(roles.store, svc.metadata, getattr(logins, "users", None), roles,
                          record=change_recorder(svc.settings))


def actor(caller: Caller) -> Actor:
    """The service's view of an API caller (and its address, for the audit log)."""
    return Actor(caller.principal, caller.admin, caller.address)


def answer(caller: Caller, call: Callable[[], T]) -> T:
    """Run a service call; its ProjectError as the API's JSON error."""
    try:
        return call()
    except ProjectNotFound as exc:
        raise RegistryError(NOT_FOUND, str(exc)) from None
    except (ProjectExists, ProjectNotEmpty) as exc:
        raise RegistryError(CONFLICT, str(exc)) from None
    except ProjectInvalid as exc:
        raise RegistryError(INVALID, str(exc)) from None
    except ProjectDenied as exc:
        if caller.anonymous and not caller.admin:
            raise unauthorized(f"authentication required: {exc}") from None
        raise denied(f"access denied: {exc}") from None
    except ProjectError as exc:
        raise RegistryError(INVALID, str(exc)) from None


def _size(value: int | str | None) -> int | None:
    return parse_size(value, "quota")


@router.get("/projects", summary="The projects the caller may see")
def list_projects(caller: AnyCaller, svc: ServicesDep) -> list[dict[str, Any]]:
    """Every project for system admins; the public ones and the caller's for others."""
    service = project_service(svc)
    return [project_dict(p) for p in answer(caller, lambda: service.list_projects(actor(caller)))]


@router.post("/projects", status_code=201, summary="Create a project (system admins)")
def create_project(body: ProjectCreate, caller: UserCaller,
                   svc: ServicesDep) -> dict[str, Any]:
    """Create a project; its creator becomes its admin."""
    service = project_service(svc)
    proxy = answer(caller, lambda: proxy_of_body(body.proxy, body.proxy_username,
                                                 body.proxy_password))
    project = answer(caller, lambda: service.create(
        body.name, public=body.public, quota=_size(body.quota), actor=actor(caller)))
    if proxy is None:
        return project_dict(project)
    try:
        answer(caller, lambda: attach_checked(svc.blobs.driver, project, proxy))
    except RegistryError:
        service.delete(project.name, actor(caller))
        raise
    return {**project_dict(project), "proxy": proxy.url}


@router.get("/projects/{name}", summary="A project, its members and usage")
def show_project(name: str, caller: AnyCaller, svc: ServicesDep) -> dict[str, Any]:
    """The project's record, members (for members) and usage."""
    service = project_service(svc)
    view = answer(caller, lambda: service.show(name, actor(caller)))
    proxy = read_proxy(svc.blobs.driver, view.project)
    return {**view_dict(view), **({"proxy": proxy.url} if proxy is not None else {})}


@router.patch("/projects/{name}", summary="Change a project's visibility or quota")
def update_project(name: str, body: ProjectUpdate, caller: UserCaller,
                   svc: ServicesDep) -> dict[str, Any]:
    """Change ``public`` (project admins) or ``quota`` (system admins)."""
    service = project_service(svc)
    changes: dict[str, Any] = {}
    if body.public is not None:
        changes["public"] = body.public
    if "quota" in body.model_fields_set:
        changes["quota"] = answer(caller, lambda: _size(body.quota))
    if not changes:
        raise RegistryError(INVALID, "nothing to change: give public or quota")
    return project_dict(answer(caller, lambda: service.update(name, actor=actor(caller),
                                                              **changes)))


@router.delete("/projects/{name}", status_code=204, summary="Delete an empty project")
def delete_project(name: str, caller: UserCaller, svc: ServicesDep) -> Response:
    """Delete a project that holds no repositories (project admins)."""
    service = project_service(svc)
    answer(caller, lambda: service.delete(name, actor(caller)))
    return Response(status_code=204)


@router.get("/projects/{name}/members", summary="A project's members")
def list_members(name: str, caller: UserCaller, svc: ServicesDep) -> list[dict[str, Any]]:
    """The members and their roles (for members)."""
    service = project_service(svc)
    return [member_dict(m) for m in answer(caller, lambda: service.members(name,
                                                                           actor(caller)))]


@router.post("/projects/{name}/members", summary="Add a member or change its role")
def add_member(name: str, body: MemberAdd, caller: UserCaller, svc: ServicesDep,
               response: Response) -> dict[str, Any]:
    """Give a user or @group a role (project admins); 201 if new, 200 if changed."""
    service = project_service(svc)
    member, added = answer(caller, lambda: service.add_member(name, body.member, body.role,
                                                              actor(caller)))
    response.status_code = 201 if added else 200
    return member_dict(member)


@router.delete("/projects/{name}/members/{member}", status_code=204,
               summary="Remove a member")
def remove_member(name: str, member: str, caller: UserCaller, svc: ServicesDep) -> Response:
    """Take a member's role away (project admins)."""
    service = project_service(svc)
    answer(caller, lambda: service.remove_member(name, member, actor(caller)))
    return Response(status_code=204)


@router.get("/projects/{name}/usage", summary="A project's storage usage and quota")
def usage(name: str, caller: UserCaller, svc: ServicesDep) -> dict[str, Any]:
    """Bytes held (each digest once), repositories, and the quota (for members)."""
    service = project_service(svc)

    def read() -> dict[str, Any]:
        project = service.require(actor(caller), name, "guest", "read the usage of")
        held = service.usage(name)
        return {"project": name, "quota": project.quota, "bytes": held.bytes,
                "repositories": held.repositories}

    return answer(caller, read)

