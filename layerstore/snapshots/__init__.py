"""Snapshots of filesystem trees: the :class:`Snapshotter` protocol and its overlay driver."""

from layerstore.snapshots.mount import mounted
from layerstore.snapshots.overlay import OverlaySnapshotter
from layerstore.snapshots.session import SnapshotSession, mounted_snapshot, snapshot_session
from layerstore.snapshots.snapshotter import Kind, Mount, SnapshotInfo, Snapshotter, Usage

__all__ = [
    "Kind",
    "Mount",
    "OverlaySnapshotter",
    "SnapshotInfo",
    "SnapshotSession",
    "Snapshotter",
    "Usage",
    "mounted",
    "mounted_snapshot",
    "snapshot_session",
]
