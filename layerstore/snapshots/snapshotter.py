"""The snapshotter seam, after containerd's ``snapshots.Snapshotter``.

Lifecycle:

- ``prepare(key, parent)`` makes an *active* snapshot ``key`` whose contents start as the
  committed snapshot ``parent`` (or empty with no parent) and returns the mounts that present
  it read-write. Changes go to this snapshot only.
- ``view(key, parent)`` is the same but read-only; a view cannot be committed.
- ``commit(name, key)`` turns the active snapshot ``key`` into the *committed* snapshot
  ``name``; ``key`` is gone afterwards. A committed snapshot is immutable and can be a parent.
- ``remove(key)`` deletes an active, view or committed snapshot; a committed snapshot that is
  still the parent of another (active, view or committed) cannot be removed
  (``FailedPrecondition``).
- ``mounts(key)`` gives the mounts of an active snapshot or view again; ``stat``, ``usage``
  and ``walk`` inspect. Mounts are plain data; :func:`layerstore.snapshots.mount.mounted`
  performs them and always unmounts.

Keys and names share one namespace; reusing one raises ``AlreadyExists``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class Kind(enum.Enum):
    """The state of a snapshot."""

    VIEW = "view"
    ACTIVE = "active"
    COMMITTED = "committed"


@dataclass(frozen=True)
class SnapshotInfo:
    """Metadata of one snapshot."""

    name: str
    kind: Kind
    parent: str | None
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class Usage:
    """Disk use of one snapshot's own layer (not its parents)."""

    size: int
    inodes: int


@dataclass(frozen=True)
class Mount:
    """One mount to perform: ``mount -t type -o options source target``.

    ``workdir`` is a directory to chdir into before mounting, so overlay ``lowerdir`` paths
    may be relative and a long chain fits in one page of mount options.
    """

    type: str
    source: str
    options: tuple[str, ...] = ()
    workdir: str | None = None


class Snapshotter(Protocol):
    """Snapshot storage; see the module docstring for the lifecycle."""

    def stat(self, key: str) -> SnapshotInfo:
        """Metadata of ``key``; ``NotFound`` if absent."""
        ...

    def usage(self, key: str) -> Usage:
        """Disk use of ``key``'s own layer."""
        ...

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of an active snapshot or view; ``FailedPrecondition`` for a committed
        one (make a view of it instead)."""
        ...

    def prepare(
        self, key: str, parent: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """Create an active snapshot on top of committed ``parent``."""
        ...

    def view(
        self, key: str, parent: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """Create a read-only view of committed ``parent``."""
        ...

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Make active snapshot ``key`` the committed snapshot ``name``; ``labels`` are merged
        over the active snapshot's own. ``FailedPrecondition`` for a view or committed key."""
        ...

    def remove(self, key: str) -> None:
        """Delete a snapshot that is not a parent of another."""
        ...

    def walk(self) -> Iterator[SnapshotInfo]:
        """Every snapshot."""
        ...

    def upperdir(self, key: str) -> Path:
        """The directory holding ``key``'s own changes, in overlay form (whiteouts as 0/0
        character devices, opaque directories with ``trusted.overlay.opaque=y``)."""
        ...

    def close(self) -> None:
        """Release the metadata database. Closing twice is harmless; other calls after
        ``close`` raise ``FailedPrecondition``."""
        ...
