"""The OCI distribution error-code table and the one error type the registry raises.

Every failure a client can cause is a :class:`RegistryError` carrying one or more
:class:`ErrorEntry` values; :func:`error_response` turns it into the spec's JSON body::

    {"errors": [{"code": "BLOB_UNKNOWN", "message": "...", "detail": ...}]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from registry.storage import errors as storage

JSON_TYPE = "application/json"


@dataclass(frozen=True)
class ErrorCode:
    """One row of the error-code table: the identifier, its HTTP status and its meaning."""

    code: str
    status: int
    description: str


BLOB_UNKNOWN = ErrorCode("BLOB_UNKNOWN", 404, "blob unknown to registry")
BLOB_UPLOAD_INVALID = ErrorCode("BLOB_UPLOAD_INVALID", 400, "blob upload invalid")
BLOB_UPLOAD_UNKNOWN = ErrorCode("BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry")
DIGEST_INVALID = ErrorCode(
    "DIGEST_INVALID", 400, "provided digest did not match uploaded content"
)
MANIFEST_BLOB_UNKNOWN = ErrorCode(
    "MANIFEST_BLOB_UNKNOWN", 400, "manifest references a manifest or blob unknown to registry"
)
MANIFEST_INVALID = ErrorCode("MANIFEST_INVALID", 400, "manifest invalid")
MANIFEST_UNKNOWN = ErrorCode("MANIFEST_UNKNOWN", 404, "manifest unknown to registry")
NAME_INVALID = ErrorCode("NAME_INVALID", 400, "invalid repository name")
NAME_UNKNOWN = ErrorCode("NAME_UNKNOWN", 404, "repository name not known to registry")
SIZE_INVALID = ErrorCode("SIZE_INVALID", 400, "provided length did not match content length")
UNAUTHORIZED = ErrorCode("UNAUTHORIZED", 401, "authentication required")
DENIED = ErrorCode("DENIED", 403, "requested access to the resource is denied")
UNSUPPORTED = ErrorCode("UNSUPPORTED", 405, "the operation is unsupported")
TOOMANYREQUESTS = ErrorCode("TOOMANYREQUESTS", 429, "too many requests")
RANGE_INVALID = ErrorCode("RANGE_INVALID", 416, "invalid content range")
PAGINATION_NUMBER_INVALID = ErrorCode(
    "PAGINATION_NUMBER_INVALID", 400, "invalid number of results requested"
)
UNKNOWN = ErrorCode("UNKNOWN", 500, "unknown error")
UNAVAILABLE = ErrorCode("UNAVAILABLE", 503, "service unavailable")
RETRY_AFTER = "5"

CODES: Mapping[str, ErrorCode] = {
    c.code: c
    for c in (
        BLOB_UNKNOWN, BLOB_UPLOAD_INVALID, BLOB_UPLOAD_UNKNOWN, DIGEST_INVALID,
        MANIFEST_BLOB_UNKNOWN, MANIFEST_INVALID, MANIFEST_UNKNOWN, NAME_INVALID, NAME_UNKNOWN,
        SIZE_INVALID, UNAUTHORIZED, DENIED, UNSUPPORTED, TOOMANYREQUESTS, RANGE_INVALID,
        PAGINATION_NUMBER_INVALID, UNKNOWN, UNAVAILABLE,
    )
}


@dataclass(frozen=True)
class ErrorEntry:
    """One element of the ``errors`` array."""

    code: ErrorCode
    message: str
    detail: Any = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this entry (``detail`` only when there is one)."""
        out: dict[str, Any] = {"code": self.code.code, "message": self.message}
        if self.detail is not None:
            out["detail"] = self.detail
        return out


class RegistryError(Exception):
    """A request the registry refuses, with the spec's error code(s) and an HTTP status.

    ``status`` defaults to the first code's status; ``headers`` are added to the response
    (``Range`` on a 416, ``WWW-Authenticate`` on a 401, …).
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        *,
        detail: Any = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        more: Sequence[ErrorEntry] = (),
    ) -> None:
        entry = ErrorEntry(code, message or code.description, detail)
        super().__init__(entry.message)
        self.entries: tuple[ErrorEntry, ...] = (entry, *more)
        self.status = status if status is not None else code.status
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def code(self) -> ErrorCode:
        """The first (main) error code."""
        return self.entries[0].code

    @property
    def message(self) -> str:
        """The first error's message."""
        return self.entries[0].message

    def __repr__(self) -> str:
        return f"RegistryError({self.code.code}, {self.message!r}, status={self.status})"


def error_body(entries: Sequence[ErrorEntry]) -> bytes:
    """The spec's JSON error document."""
    return json.dumps({"errors": [e.to_dict() for e in entries]}).encode()


def error_response(err: RegistryError) -> Response:
    """The HTTP response for a refused request."""
    body = error_body(err.entries)
    headers = {"content-type": JSON_TYPE, **err.headers}
    return Response(body, status_code=err.status, headers=headers)


def internal_error_response() -> Response:
    """The 500 answer for an unexpected exception (the traceback goes to the log only)."""
    return error_response(RegistryError(UNKNOWN, "internal server error; see the registry log"))


def from_storage_error(err: storage.StorageError) -> RegistryError:
    """The OCI error for a storage failure: the one place storage errors become codes.

    A backend failure (or a driver error no service should have let through) is
    UNAVAILABLE, a 503 with ``Retry-After``: the client may retry, the request was fine.
    """
    message = str(err)
    if isinstance(err, storage.BlobUnknown):
        return RegistryError(BLOB_UNKNOWN, message, detail={"digest": err.digest})
    if isinstance(err, storage.UploadUnknown):
        return RegistryError(BLOB_UPLOAD_UNKNOWN, message, detail={"uuid": err.upload_id})
    if isinstance(err, storage.DigestMismatch):
        return RegistryError(DIGEST_INVALID, message, detail={"digest": err.digest})
    if isinstance(err, storage.SizeMismatch):
        return RegistryError(SIZE_INVALID, message, detail=err.detail)
    if isinstance(err, storage.OffsetMismatch):
        return RegistryError(RANGE_INVALID, message, detail={"offset": err.offset},
                             headers={"Range": f"0-{max(err.offset - 1, 0)}"})
    if isinstance(err, storage.ManifestReferencesMissing):
        first, *more = (
            ErrorEntry(MANIFEST_BLOB_UNKNOWN if p.found is None else MANIFEST_INVALID, str(p),
                       {"digest": p.digest}) for p in err.problems)
        return RegistryError(first.code, first.message, detail=first.detail, more=more)
    if isinstance(err, storage.UploadBusy):
        return RegistryError(TOOMANYREQUESTS, message, detail={"uuid": err.upload_id},
                             headers={"Retry-After": "1"})
    return RegistryError(UNAVAILABLE, f"storage backend unavailable: {message}; retry",
                         headers={"Retry-After": RETRY_AFTER})


def as_registry_error(err: Exception) -> RegistryError:
    """``err`` itself if it is a RegistryError, else its storage mapping."""
    if isinstance(err, RegistryError):
        return err
    if isinstance(err, storage.StorageError):
        return from_storage_error(err)
    raise TypeError(f"not a registry or storage error: {err!r}")


def unavailable_response() -> Response:
    """The 503 answer while the metadata database cannot be used (the cause goes to the
    log only)."""
    return error_response(RegistryError(
        UNAVAILABLE, "the registry's metadata database is unavailable; retry",
        headers={"Retry-After": "1"}))
