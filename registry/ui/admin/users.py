"""The registry's users (system admins): list them with their groups and project roles, add
one, set a password or groups, remove one; the access rules of the config and what one user
may do where (system admins; read only: the rules live in the config file); and each user's
own CLI secrets (make one, shown once; revoke).

Users are kept by the registry's :class:`~registry.auth.users.UserStore` (the one its logins
read, so a change counts at once, and a removed user's sessions end), and each change is
logged in the audit log as ``registry user`` logs it (``user.add``, ``user.remove``), done
by the viewer. CLI secrets go through :class:`~registry.robots.service.RobotService`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from registry import audit
from registry.api.robots import robot_service
from registry.auth.authorizers import Logins
from registry.auth.explain import render as explain
from registry.auth.users import UserError, UserStore
from registry.projects.model import ProjectInvalid
from registry.robots.service import Issued
from registry.ui.admin.common import (
    BASE,
    Flashes,
    act,
    audit_actor,
    field,
    refusals,
    require_system_admin,
    require_viewer,
    services,
    show,
)
from registry.ui.errors import UIError, UINotFound
from registry.ui.session import logins_of

router = APIRouter()


def _logins(request: Request) -> Logins:
    found = logins_of(services(request))
    if found is None:
        raise UINotFound("this registry has no users: it runs without authentication "
                         "(auth = \"none\")")
    return found


def _groups(text: str) -> list[str]:
    return sorted({g.strip() for g in text.replace(",", " ").split() if g.strip()})


def users_page(request: Request, flashes: Flashes | None = None, status: int = 200,
               **_: Any) -> Response:
    """Every user, its groups, whether it is a system admin and its project roles."""
    require_system_admin(request, "manage users")
    logins = _logins(request)
    roles: dict[str, list[str]] = {}
    store = services(request).projects
    with refusals():
        users = logins.users.users()
        if store is not None:
            for member in store.store.members():
                roles.setdefault(member.name, []).append(f"{member.project}: {member.role}")
    rows = [(u, logins.policy.is_admin(logins.policy.principal(u.name, u.groups)),
             roles.get(u.name, [])) for u in users]
    return show(request, "admin/users.html", "users", here=f"{BASE}/users", flashes=flashes,
                status=status, rows=rows)


@router.get("/users", include_in_schema=False)
def list_users(request: Request) -> Response:
    """The users page."""
    return users_page(request)


def _password(form: dict[str, str]) -> str:
    password = form.get("password", "")
    if password != form.get("again", ""):
        raise UserError("password: the two passwords differ")
    return password


@router.post("/users", include_in_schema=False)
async def change_users(request: Request) -> Response:
    """``op``: add, set (password and groups) or remove."""
    def change(form: dict[str, str]) -> str:
        who = require_system_admin(request, "manage users")
        store: UserStore = _logins(request).users
        settings = services(request).settings
        op = form.get("op", "")
        name = field(form, "user")
        if op in ("add", "set"):
            existing = store.get(name)
            if op == "add" and existing is not None:
                raise UserError(f"user {name!r} exists already: set its password below")
            if op == "set" and existing is None:
                raise UserError(f"no user {name!r}")
            groups = _groups(form.get("groups", "")) if "groups" in form or existing is None \
                else list(existing.groups)
            store.add(name, _password(form), groups, replace=op == "set")
            audit.change(settings, "user.add", actor=audit_actor(who),
                         detail=f"user={name} groups={','.join(groups) or '-'}"
                         f"{' (replaced)' if op == 'set' else ''}")
            return (f"user {name} added" if op == "add"
                    else f"user {name}: password and groups set; its sessions end")
        if op == "remove":
            if name == who.name:
                raise UserError("you cannot remove your own account while logged in with it")
            found = store.get(name)
            if found is not None and found.source != "users":
                raise UserError(f"user {name!r} comes from the htpasswd file: remove it there")
            if not store.remove(name):
                raise UIError(f"no user {name!r}", 404)
            audit.change(settings, "user.remove", actor=audit_actor(who),
                         detail=f"user={name}")
            return f"user {name} removed; its sessions and logins end"
        raise ProjectInvalid(f"op {op[:40]!r} is not an action of this page")

    return await act(request, users_page, change)


@router.get("/access", include_in_schema=False)
def access_rules(request: Request, user: str = "") -> Response:
    """The access policy of the config, or what ``user`` may do where."""
    require_system_admin(request, "read the access rules")
    logins = logins_of(services(request))
    lines: list[str] = []
    for_user: list[str] = []
    if logins is not None:
        lines = explain(logins.policy)
        if user:
            found = logins.users.get(user[:64])
            who = logins.policy.principal(user[:64], found.groups if found else ())
            for_user = explain(logins.policy, who)
            if found is None:
                for_user.insert(0, f"(no user {user[:64]!r}: what it would get)")
    return show(request, "admin/access.html", "access", here=f"{BASE}/access", lines=lines,
                user=user[:64], for_user=for_user, open=logins is None)


def account_page(request: Request, flashes: Flashes | None = None, status: int = 200,
                 issued: Issued | None = None, **_: Any) -> Response:
    """The viewer's CLI secrets."""
    who = require_viewer(request, "manage your CLI secrets")
    if who.open:
        raise UINotFound("this registry runs without authentication: there are no CLI "
                         "secrets")
    with refusals():
        secrets = robot_service(services(request)).user_secrets(who.name)
    return show(request, "admin/account.html", "account", here=f"{BASE}/account",
                flashes=flashes, status=status, secrets=secrets, issued=issued)


@router.get("/account", include_in_schema=False)
def account(request: Request) -> Response:
    """The CLI secrets page."""
    return account_page(request)


@router.post("/account", include_in_schema=False)
async def change_account(request: Request) -> Response:
    """``op``: create or revoke one of the viewer's CLI secrets."""
    issued: list[Issued] = []

    def change(form: dict[str, str]) -> str:
        who = require_viewer(request, "manage your CLI secrets")
        service = robot_service(services(request))
        op = form.get("op", "")
        if op == "create":
            made = service.create_user_secret(who.name, field(form, "label", "") or None,
                                              audit_actor(who))
            issued.append(made)
            return "CLI secret made: copy it now, it is not shown again"
        if op == "revoke":
            secret = field(form, "secret")
            service.revoke_user_secret(who.name, secret, audit_actor(who))
            return f"CLI secret {secret} revoked"
        raise ProjectInvalid(f"op {op[:40]!r} is not an action of this page")

    def page(request: Request, flashes: Flashes | None = None, status: int = 200,
             **_: Any) -> Response:
        return account_page(request, flashes, status, issued[0] if issued else None)

    return await act(request, page, change)
