"""``/api/v1``: robot accounts of a project and users' CLI secrets, through
:class:`~registry.robots.service.RobotService` (the one ``registry robot`` and ``registry
user secret`` use).

==========================================================  ==============================
``GET    /projects/{project}/robots``                       the project's robots
``POST   /projects/{project}/robots`` {name, actions, …}    create; the secret, once
``GET    /projects/{project}/robots/{name}``                one robot (no secret)
``PATCH  /projects/{project}/robots/{name}`` {disabled}     disable or enable
``DELETE /projects/{project}/robots/{name}``                delete
``POST   /projects/{project}/robots/{name}/rotate``         a new secret, once
``GET    /users/{user}/secrets``                            a user's CLI secrets (no secret)
``POST   /users/{user}/secrets`` {name}                     a new CLI secret, once
``DELETE /users/{user}/secrets/{name}``                     revoke one (by label or id)
==========================================================  ==============================

A project's robots are managed by its admins (role ``admin``) and the system admins; a
user's CLI secrets by the user itself and the system admins. ``{name}`` is the robot's own
name or its full ``robot$project+name``. Robots manage nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.responses import Response

from registry.api.deps import Caller, ServicesDep, UserCaller, denied
from registry.api.errors import CONFLICT, INVALID, NOT_FOUND
from registry.api.projects import actor, answer, project_service
from registry.audit import change_recorder
from registry.errors import RegistryError
from registry.handlers.base import Services
from registry.robots.commands import project_made_in
from registry.robots.service import RobotService, open_robot_store
from registry.robots.values import (
    ROBOT_PREFIX,
    RobotError,
    RobotExists,
    RobotNotFound,
    robot_name,
)

router = APIRouter(tags=["robots"])
T = TypeVar("T")


class RobotCreate(BaseModel):
    """A new robot account of the project."""

    name: str = Field(description="its name within the project (robot$project+NAME)")
    actions: list[str] | str = Field(description="some of pull, push, delete")
    expires_days: int | None = Field(None, description="days until it expires; null: never")
    description: str = Field("", description="what it is for")


class RobotUpdate(BaseModel):
    """The state to set."""

    disabled: bool = Field(description="true refuses its logins until set false again")


class SecretCreate(BaseModel):
    """A new CLI secret."""

    name: str | None = Field(None, description="a label to tell it apart")


def robot_service(svc: Services) -> RobotService:
    """The robot service of the server (the one its logins use, when there is one)."""
    secrets = getattr(getattr(svc.authorizer, "logins", None), "secrets", None)
    found = getattr(secrets, "service", None)
    store = found.store if isinstance(found, RobotService) else open_robot_store(svc.settings)
    roles = svc.projects
    logins = getattr(svc.authorizer, "logins", None)
    users = getattr(logins, "users", None)
    return RobotService(
        store,
        None if roles is None else project_made_in(roles.store),
        None if users is None else (lambda name: users.get(name) is not None),
        change_recorder(svc.settings))


def _robots(caller: Caller, svc: Services, project: str) -> RobotService:
    """The robot service, if ``caller`` may manage ``project``'s robots."""
    if caller.principal.robot is not None:
        raise denied(f"access denied: robot account {caller.name} may not manage robots")
    projects = project_service(svc)
    answer(caller, lambda: projects.require(actor(caller), project, "admin",
                                            "manage the robots of"))
    return robot_service(svc)


def _robot_call(call: Callable[[], T]) -> T:
    try:
        return call()
    except RobotNotFound as exc:
        raise RegistryError(NOT_FOUND, str(exc)) from None
    except RobotExists as exc:
        raise RegistryError(CONFLICT, str(exc)) from None
    except RobotError as exc:
        raise RegistryError(INVALID, str(exc)) from None


def _full(project: str, name: str) -> str:
    return name if name.startswith(ROBOT_PREFIX) else robot_name(project, name)


def _mine(project: str, full: str) -> str:
    if not full.startswith(f"{ROBOT_PREFIX}{project}+"):
        raise RegistryError(NOT_FOUND, f"no robot {full!r} in project {project!r}")
    return full


@router.get("/projects/{project}/robots", summary="A project's robot accounts")
def list_robots(project: str, caller: UserCaller, svc: ServicesDep) -> list[dict[str, Any]]:
    """Every robot of the project (project admins)."""
    service = _robots(caller, svc, project)
    return [r.to_json() for r in _robot_call(lambda: service.robots(project))]


@router.post("/projects/{project}/robots", status_code=201,
             summary="Create a robot account; its secret is in the answer, once")
def create_robot(project: str, body: RobotCreate, caller: UserCaller,
                 svc: ServicesDep) -> dict[str, Any]:
    """Make ``robot$project+name`` with ``actions`` (project admins)."""
    service = _robots(caller, svc, project)
    actions = body.actions if isinstance(body.actions, str) else ",".join(body.actions)
    issued = _robot_call(lambda: service.create(project, body.name, actions,
                                                body.expires_days,
                                                description=body.description,
                                                actor=caller.audited))
    return issued.to_json()


@router.get("/projects/{project}/robots/{name}", summary="One robot account")
def show_robot(project: str, name: str, caller: UserCaller,
               svc: ServicesDep) -> dict[str, Any]:
    """The robot's record (never its secret)."""
    service = _robots(caller, svc, project)
    full = _mine(project, _full(project, name))
    return _robot_call(lambda: service.find(full)).to_json()


@router.patch("/projects/{project}/robots/{name}", summary="Disable or enable a robot")
def update_robot(project: str, name: str, body: RobotUpdate, caller: UserCaller,
                 svc: ServicesDep) -> dict[str, Any]:
    """Set ``disabled``: a disabled robot is refused at its next login."""
    service = _robots(caller, svc, project)
    full = _mine(project, _full(project, name))
    return _robot_call(lambda: service.set_disabled(full, body.disabled, caller.audited)).to_json()


@router.delete("/projects/{project}/robots/{name}", status_code=204,
               summary="Delete a robot account")
def delete_robot(project: str, name: str, caller: UserCaller, svc: ServicesDep) -> Response:
    """Delete the robot; its logins are refused from now on."""
    service = _robots(caller, svc, project)
    full = _mine(project, _full(project, name))
    _robot_call(lambda: service.delete(full, caller.audited))
    return Response(status_code=204)


@router.post("/projects/{project}/robots/{name}/rotate",
             summary="Give a robot a new secret (in the answer, once)")
def rotate_robot(project: str, name: str, caller: UserCaller,
                 svc: ServicesDep) -> dict[str, Any]:
    """A new random secret; the old one and its refresh tokens stop working."""
    service = _robots(caller, svc, project)
    full = _mine(project, _full(project, name))
    return _robot_call(lambda: service.rotate(full, actor=caller.audited)).to_json()


def _secrets(caller: Caller, svc: Services, user: str) -> RobotService:
    if caller.principal.robot is not None or (caller.principal.subject != user
                                              and not caller.admin):
        raise denied(f"access denied: {caller.name} may not manage the CLI secrets of "
                     f"{user!r} (only the user itself and system admins may)")
    return robot_service(svc)


@router.get("/users/{user}/secrets", summary="A user's CLI secrets (not the secrets)")
def list_secrets(user: str, caller: UserCaller, svc: ServicesDep) -> list[dict[str, Any]]:
    """The user's CLI secrets: id, label, when made."""
    service = _secrets(caller, svc, user)
    return [s.to_json() for s in _robot_call(lambda: service.user_secrets(user))]


@router.post("/users/{user}/secrets", status_code=201,
             summary="Make a CLI secret (in the answer, once)")
def create_secret(user: str, body: SecretCreate, caller: UserCaller,
                  svc: ServicesDep) -> dict[str, Any]:
    """A new secret the user can log in with instead of its password."""
    service = _secrets(caller, svc, user)
    issued = _robot_call(lambda: service.create_user_secret(user, body.name,
                                                                 caller.audited))
    return issued.to_json()


@router.delete("/users/{user}/secrets/{name}", status_code=204,
               summary="Revoke a CLI secret")
def revoke_secret(user: str, name: str, caller: UserCaller, svc: ServicesDep) -> Response:
    """Revoke the secret with that label or id; its logins are refused from now on."""
    service = _secrets(caller, svc, user)
    _robot_call(lambda: service.revoke_user_secret(user, name, caller.audited))
    return Response(status_code=204)
