"""Layers through snapshots: changes made in a prepared snapshot become a layer, and layers
applied in overlay form into a fresh snapshot chain reproduce the same merged view."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from layerstore.content.local import LocalStore
from layerstore.diff import apply_layer, write_upper
from layerstore.snapshots.overlay import OverlaySnapshotter
from layerstore.snapshots.session import mounted_snapshot, snapshot_session
from layerstore.testing.tree import differences, dir_manifest


def _edits(root: Path, step: int) -> None:
    if step == 0:
        shutil.copytree("/etc/apt", root / "etc/apt", symlinks=True)
        (root / "data/sub").mkdir(parents=True)
        (root / "data/sub/f").write_text("one\n")
        (root / "data/g").write_text("g\n")
        os.symlink("/data/g", root / "link")
        os.mknod(root / "fifo", 0o600 | 0o010000)
    elif step == 1:
        (root / "data/g").unlink()
        subprocess.run(["rm", "-rf", str(root / "data/sub")], check=True)
        (root / "data/sub").mkdir()
        (root / "data/sub/new").write_text("new\n")
        os.chmod(root / "data", 0o700)
        os.chown(root / "link", 5, 6, follow_symlinks=False)
    else:
        subprocess.run(["rm", "-rf", str(root / "etc/apt")], check=True)
        (root / "data/g").write_text("back\n")
        os.link(root / "data/g", root / "data/g-hard")


def test_snapshot_changes_round_trip_through_layers(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "content")
    source = OverlaySnapshotter(tmp_path / "source")
    layers = []
    parent = None
    for step in range(3):
        with snapshot_session(source, f"work{step}", parent) as session:
            with session.mounted() as root:
                _edits(root, step)
            layers.append(write_upper(session.upperdir, store, "zstd"))
            session.commit(f"layer{step}")
        parent = f"layer{step}"
    with mounted_snapshot(source, "final-view", parent, readonly=True) as root:
        expected = dir_manifest(root)

    target = OverlaySnapshotter(tmp_path / "target")
    parent = None
    for step, layer in enumerate(layers):
        with snapshot_session(target, f"extract{step}", parent) as session:
            diff_id = apply_layer(store, layer.descriptor, session.upperdir, overlay=True)
            assert diff_id == layer.diff_id
            session.commit(f"applied{step}")
        parent = f"applied{step}"
    with mounted_snapshot(target, "check", parent, readonly=True) as root:
        got = dir_manifest(root)
    assert not differences(expected, got)
    assert "etc/apt" not in got and got["data/sub/new"].kind == "file"
    assert "data/sub/f" not in got and got["data"].mode == 0o700

    flat = tmp_path / "flat"
    flat.mkdir()
    for layer in layers:
        apply_layer(store, layer.descriptor, flat)
    assert not differences(expected, dir_manifest(flat))
    source.close()
    target.close()
