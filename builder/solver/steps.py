"""Filesystem-changing ops: a snapshot on the parent's chain, the change, its layer."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from builder.store import BuildStore, layer_labels, temp_key
from layerstore.archive.whiteout import is_overlay_opaque
from layerstore.diff import write_upper
from layerstore.digest import Digest, chain_ids
from layerstore.layerblob import Layer
from layerstore.snapshots.session import snapshot_session


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
    with snapshot_session(store.snapshots, temp_key(), parent) as session:
        with session.mounted() as rootfs:
            work(rootfs)
        if _empty_upper(session.upperdir):
            return None, parent
        layer = write_upper(session.upperdir, store.content, compression,
                            source_date_epoch=source_date_epoch, level=level)
        chain = (str(layer.diff_id) if parent is None else
                 str(chain_ids([Digest.parse(parent), layer.diff_id])[-1]))
        session.commit(chain, layer_labels(layer.descriptor, layer.diff_id), exist_ok=True)
        return layer, chain
