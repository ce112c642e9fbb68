"""The error codes of the management API beyond the distribution table, and the handlers
that answer every failure of ``/api/v1/`` with the registry's JSON error body::

    {"errors": [{"code": "NOT_FOUND", "message": "project 'team' does not exist", ...}]}
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from registry.errors import UNSUPPORTED, ErrorCode, RegistryError, error_response

NOT_FOUND = ErrorCode("NOT_FOUND", 404, "the named object does not exist")
CONFLICT = ErrorCode("CONFLICT", 409, "the request conflicts with what is stored")
INVALID = ErrorCode("INVALID", 400, "the request is malformed")


async def _registry_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RegistryError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    path = request.scope["path"][:200]
    if exc.status_code == 404:
        err = RegistryError(NOT_FOUND, f"no endpoint {path!r}", detail={"path": path})
    elif exc.status_code == 405:
        err = RegistryError(UNSUPPORTED, f"{request.method} is not supported on {path!r}")
    else:
        err = RegistryError(INVALID, str(exc.detail), status=exc.status_code)
    return error_response(err)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "request"
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    message = "; ".join(problems) or "malformed request"
    return error_response(RegistryError(INVALID, message, detail=problems))


def install_error_handlers(app: FastAPI) -> None:
    """Answer RegistryError, unknown routes and malformed bodies with the JSON error body."""
    app.add_exception_handler(RegistryError, _registry_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
