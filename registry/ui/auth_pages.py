"""Logging in and out of the web UI with the registry's users.

A login is checked by the registry's own :class:`~registry.auth.authorizers.Logins`, so the
login lockout (:mod:`registry.auth.throttle`) counts and refuses UI logins like any other;
robot accounts and users' CLI secrets cannot log in here (they are for machines and the
command line): the session follows the user's password. Both forms carry the CSRF token.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from registry.auth.access import AllowAll
from registry.auth.authorizers import client_address
from registry.errors import TOOMANYREQUESTS, RegistryError
from registry.robots.service import is_robot
from registry.ui.render import PREFIX, render
from registry.ui.session import (
    attach_session,
    end_session,
    logins_of,
    require_csrf,
    start_session,
    viewer,
)

router = APIRouter()


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of the UI, never another site."""
    if not target or not target.startswith(PREFIX + "/") or target.startswith("//") \
            or "\\" in target or any(ord(c) < 33 for c in target):
        return PREFIX + "/"
    return target


@router.get("/login", include_in_schema=False)
async def login_form(request: Request, next: str = "") -> Response:
    """The login form."""
    if viewer(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", next=safe_next(next), error="", username="")


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    """Check the user's password (throttled like every login) and start a session."""
    form = await request.form()
    require_csrf(request, form)
    username = str(form.get("username", ""))[:200]
    password = str(form.get("password", ""))
    target = safe_next(str(form.get("next", "")))
    logins = logins_of(request.app.state.services)
    if logins is None:
        if isinstance(request.app.state.services.authorizer, AllowAll):
            return RedirectResponse(target, status_code=303)
        return render(request, "login.html", status=401, next=target, username=username,
                      error="this registry's authorizer has no users to log in with")
    if not username or is_robot(username):
        error = "robot accounts cannot log in to the web UI" if username else \
            "give a user name"
        return render(request, "login.html", status=401, next=target, error=error,
                      username=username)
    try:
        who = await logins.password(client_address(request), username, password)
    except RegistryError as err:
        status = 429 if err.code is TOOMANYREQUESTS else 401
        return render(request, "login.html", status=status, next=target,
                      error=err.message, username=username)
    if who.robot is not None or who.credential:
        what = "robot accounts" if who.robot is not None else "CLI secrets"
        return render(request, "login.html", status=401, next=target, username=username,
                      error=f"{what} cannot log in to the web UI: use the user's password")
    start_session(request, who)
    return attach_session(request, RedirectResponse(target, status_code=303))


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    """End the session."""
    form = await request.form()
    require_csrf(request, form)
    end_session(request)
    return attach_session(request, RedirectResponse(PREFIX + "/", status_code=303))
