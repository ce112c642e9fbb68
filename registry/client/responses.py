"""Turning a registry's error answers into :mod:`registry.client.errors`.

Error bodies follow the distribution spec: ``{"errors": [{"code", "message", "detail"}]}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx

from registry.client.auth import parse_challenges
from registry.client.errors import (
    ClientError,
    Denied,
    NotFound,
    ProtocolError,
    Unauthorized,
)
from registry.client.reference import DEFAULT_REGISTRY

_MAX_MESSAGE = 300


@dataclass(frozen=True)
class SpecError:
    """One entry of an error body."""

    code: str
    message: str


def spec_errors(response: httpx.Response) -> list[SpecError]:
    """The ``errors`` of a response body (none when it is not the spec's JSON)."""
    try:
        doc = json.loads(response.content)
    except (ValueError, UnicodeDecodeError, httpx.ResponseNotRead):
        return []
    entries = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        return []
    out = []
    for entry in entries:
        if isinstance(entry, dict):
            out.append(SpecError(str(entry.get("code", "")),
                                 str(entry.get("message", ""))[:_MAX_MESSAGE]))
    return out


def describe_errors(response: httpx.Response) -> str:
    """``CODE: message; …`` from the body, or the status line when there is no body."""
    errors = spec_errors(response)
    if errors:
        return "; ".join(f"{e.code}: {e.message}" if e.message else e.code for e in errors)
    try:
        text = response.text.strip()
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        text = ""
    return f"HTTP {response.status_code}" + (f": {text[:200]}" if text else "")


def login_hint(registry: str) -> str:
    """The command that stores credentials for ``registry``."""
    return "pybuild login" if registry == DEFAULT_REGISTRY else f"pybuild login {registry}"


def error_for(response: httpx.Response, *, registry: str, what: str, method: str = "",
              has_credentials: bool = False) -> ClientError:
    """The ClientError for a failed answer about ``what`` (a reference, a blob …)."""
    status = response.status_code
    errors = spec_errors(response)
    codes = [e.code for e in errors]
    detail = describe_errors(response)
    code = codes[0] if codes else ""
    if status == 401:
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        insufficient = any(c.error == "insufficient_scope" for c in challenges)
        if has_credentials and (insufficient or "DENIED" in codes):
            return Denied(f"registry {registry} denied {method} {what} to these credentials "
                          f"({detail})", registry=registry)
        if has_credentials:
            reason = f"registry {registry} refused the credentials for {what} ({detail})"
            return Unauthorized(f"{reason}; run `{login_hint(registry)}` to store the right "
                                "ones", registry=registry, reason=reason)
        reason = f"registry {registry} needs credentials for {what} ({detail})"
        return Unauthorized(f"{reason}; run `{login_hint(registry)}`", registry=registry,
                            reason=reason)
    if status == 403:
        return Denied(f"registry {registry} denied {method} {what} ({detail})",
                      registry=registry)
    if status == 404 and (not codes or code in ("NAME_UNKNOWN", "MANIFEST_UNKNOWN",
                                                "BLOB_UNKNOWN", "BLOB_UPLOAD_UNKNOWN")):
        return NotFound(f"{what} not found on registry {registry} ({detail})",
                        registry=registry)
    return ProtocolError(f"registry {registry} refused {method} {what}: {detail}",
                         registry=registry, code=code, status=status)


__all__ = ["SpecError", "describe_errors", "error_for", "login_hint", "spec_errors"]
