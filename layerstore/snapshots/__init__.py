"""Snapshots of filesystem trees: the :class:`Snapshotter` protocol and its overlay driver."""

from layerstore.snapshots.snapshotter import Kind, Mount, SnapshotInfo, Snapshotter, Usage

__all__ = ["Kind", "Mount", "SnapshotInfo", "Snapshotter", "Usage"]
