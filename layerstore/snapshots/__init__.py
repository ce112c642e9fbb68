"""Snapshots of filesystem trees: the :class:`Snapshotter` protocol and its overlay driver."""

from layerstore.snapshots.mount import mounted
from layerstore.snapshots.overlay import OverlaySnapshotter
from layerstore.snapshots.session import mounted_snapshot
from layerstore.snapshots.snapshotter import Kind, Mount, SnapshotInfo, Snapshotter, Usage

__all__ = [
    "Kind",
    "Mount",
    "OverlaySnapshotter",
    "SnapshotInfo",
    "Snapshotter",
    "Usage",
    "mounted",
    "mounted_snapshot",
]
