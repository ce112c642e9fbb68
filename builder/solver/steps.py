"""Filesystem-changing ops: a snapshot on the parent's chain, the change, its layer."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from builder.store import BuildStore, layer_labels, temp_key
from layerstore.archive.whiteout import is_overlay_opaque
from layerstore.diff import write_upper
from layerstore.digest import Digest, chain_ids
from layerstore.errors import AlreadyExists, NotFound
from layerstore.layerblob import Layer
from layerstore.snapshots.mount import mounted


def _empty_upper(upper: Path) -> bool:
    with os.scandir(upper) as it:
        if next(it, None) is not None:
            return False
    return not is_overlay_opaque(os.fsencode(upper))


def commit_change(store: BuildStore, parent: str | None, work: Callable[[Path], None], *,
                  compression: str, source_date_epoch: int | None,
                  level: int | None = None) -> tuple[Layer | None, str | None]:
    """Run ``work(rootfs)`` on a writable snapshot of ``parent`` (a committed chainID, None
    for an empty filesystem) and commit what it changed as a new layer (``compression`` at
    ``level``); return the layer and the new chainID, or None and ``parent`` when nothing
    changed.

    The new snapshot is named by the chainID of the resulting layer stack, so a stack built
    twice (or unpacked from an image) is stored once. On any failure the snapshot is removed.
    """
    key = temp_key()
    mounts = store.snapshots.prepare(key, parent)
    try:
        with mounted(mounts) as rootfs:
            work(rootfs)
        upper = store.snapshots.upperdir(key)
        if _empty_upper(upper):
            return None, parent
        layer = write_upper(upper, store.content, compression,
                            source_date_epoch=source_date_epoch, level=level)
        chain = (str(layer.diff_id) if parent is None else
                 str(chain_ids([Digest.parse(parent), layer.diff_id])[-1]))
        with contextlib.suppress(AlreadyExists):
            store.snapshots.commit(chain, key, layer_labels(layer.descriptor, layer.diff_id))
        return layer, chain
    finally:
        with contextlib.suppress(NotFound, OSError):  # once committed, the key is gone
            store.snapshots.remove(key)
