"""The storage package's one error hierarchy.

Drivers raise the *driver* errors (a path is missing, an offset is wrong, the backend cannot be
reached); the blob, upload and manifest services raise the *domain* errors (a blob or upload is
unknown, a digest or size does not match, an upload is busy). Neither knows about HTTP:
:func:`registry.errors.from_storage_error` maps them to the OCI error codes in one place.
"""

from __future__ import annotations

from collections.abc import Mapping


class StorageError(Exception):
    """Any failure of registry storage; the message names what and where."""


# Driver errors.


class PathNotFound(StorageError):
    """The driver holds nothing at a path."""


class InvalidPath(StorageError):
    """A path is not a valid driver path (empty component, ``..``, odd characters)."""


class InvalidOffset(StorageError):
    """A read or resumed write starts at an offset the content does not have."""


class PathBusy(StorageError):
    """Another writer, perhaps in another process, holds the content at a path."""


class BackendUnavailable(StorageError):
    """The storage backend failed or cannot be reached right now; retrying may work."""


class BackendMisconfigured(StorageError):
    """The storage backend refuses the configuration (unknown bucket, bad credentials).

    ``setting`` names the setting an operator must fix."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


# Domain errors of the blob, upload and manifest services.


class BlobUnknown(StorageError):
    """A repository does not see a blob (or its bytes are gone)."""

    def __init__(self, message: str, digest: str) -> None:
        super().__init__(message)
        self.digest = digest


class UploadUnknown(StorageError):
    """An upload session does not exist (or has ended)."""

    def __init__(self, message: str, upload_id: str) -> None:
        super().__init__(message)
        self.upload_id = upload_id


class DigestMismatch(StorageError):
    """Uploaded content does not hash to the digest the client named."""

    def __init__(self, message: str, digest: str) -> None:
        super().__init__(message)
        self.digest = digest


class SizeMismatch(StorageError):
    """A request body did not carry the number of bytes it declared."""

    def __init__(self, message: str, detail: Mapping[str, int]) -> None:
        super().__init__(message)
        self.detail = dict(detail)


class OffsetMismatch(StorageError):
    """A chunk does not start where the upload session ends (``offset``)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class UploadBusy(StorageError):
    """Another request holds the upload session; retry shortly."""

    def __init__(self, message: str, upload_id: str) -> None:
        super().__init__(message)
        self.upload_id = upload_id


class MissingReference(StorageError):
    """One blob or child manifest a pushed manifest needs that the repository lacks
    (``found`` is ``None``) or holds with another size."""

    def __init__(self, kind: str, digest: str, repository: str, declared: int,
                 found: int | None) -> None:
        if found is None:
            message = f"{kind} {digest} is unknown to repository {repository!r}; push it first"
        else:
            message = (f"{kind} {digest} has {found} bytes in repository {repository!r}, "
                       f"not the {declared} the manifest says")
        super().__init__(message)
        self.kind = kind
        self.digest = digest
        self.found = found


class ManifestReferencesMissing(StorageError):
    """A pushed manifest needs blobs or manifests the repository does not hold."""

    def __init__(self, problems: tuple[MissingReference, ...]) -> None:
        super().__init__(str(problems[0]))
        self.problems = problems
