"""The typed error hierarchy of the layerstore package.

Every error raised on purpose by layerstore derives from :class:`LayerstoreError`; its
message names what is wrong and where (a digest, a path inside a layer, a snapshot key).
"""

from __future__ import annotations


class LayerstoreError(Exception):
    """Base of every error raised by layerstore."""


class NotFound(LayerstoreError):
    """The named object (blob, snapshot, image, path) does not exist."""


class AlreadyExists(LayerstoreError):
    """An object with that name or digest already exists."""


class InvalidArgument(LayerstoreError):
    """A value from outside (digest string, JSON document, option) is malformed."""


class DigestMismatch(LayerstoreError):
    """Content did not hash to the digest it was declared with."""


class SizeMismatch(LayerstoreError):
    """Content did not have the size it was declared with."""


class Unavailable(LayerstoreError):
    """The object is locked or being written by someone else."""


class FailedPrecondition(LayerstoreError):
    """The operation is not allowed in the object's current state (e.g. commit of a view)."""


class UnsafeLayer(LayerstoreError):
    """A layer tar entry tried to write outside the root or is otherwise hostile."""


class MountError(LayerstoreError):
    """A mount or unmount system call failed; ``errno`` is the system error number."""

    errno: int | None = None
