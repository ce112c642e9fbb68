"""Snapshots of filesystem trees: the :class:`Snapshotter` protocol and its overlay driver.

The names below are loaded on first use, so that importing one module of the package (the
snapshot table, say) does not load the mount machinery too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from layerstore.snapshots.mount import mounted
    from layerstore.snapshots.overlay import OverlaySnapshotter
    from layerstore.snapshots.session import mounted_snapshot
    from layerstore.snapshots.snapshotter import Kind, Mount, SnapshotInfo, Snapshotter, Usage

_WHERE = {
    "Kind": "snapshotter",
    "Mount": "snapshotter",
    "OverlaySnapshotter": "overlay",
    "SnapshotInfo": "snapshotter",
    "Snapshotter": "snapshotter",
    "Usage": "snapshotter",
    "mounted": "mount",
    "mounted_snapshot": "session",
}

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
