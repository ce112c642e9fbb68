"""mounted_snapshot: prepare or view → mount → yield → unmount → remove, on every path."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerstore.errors import NotFound
from layerstore.mountinfo import mounts_under
from layerstore.snapshots import OverlaySnapshotter, mounted_snapshot


@pytest.fixture
def sn(tmp_path: Path) -> Iterator[OverlaySnapshotter]:
    snapshotter = OverlaySnapshotter(tmp_path / "snapshots", sync=False)
    yield snapshotter
    snapshotter.close()
    assert mounts_under(tmp_path) == []


@pytest.fixture
def base(sn: OverlaySnapshotter) -> str:
    with mounted_snapshot(sn, "base-work", None, keep=True) as root:
        (root / "f").write_text("base\n")
    sn.commit("base", "base-work")
    return "base"


def test_active_snapshot_is_writable_and_removed(sn: OverlaySnapshotter, base: str,
                                                 tmp_path: Path) -> None:
    with mounted_snapshot(sn, "k", base, temp_dir=tmp_path) as root:
        assert (root / "f").read_text() == "base\n"
        (root / "g").write_text("new\n")
        assert mounts_under(root)
        point = root
    assert not point.exists()
    with pytest.raises(NotFound):
        sn.stat("k")


def test_view_is_read_only(sn: OverlaySnapshotter, base: str) -> None:
    with mounted_snapshot(sn, "v", base, readonly=True) as root:
        assert (root / "f").read_text() == "base\n"
        with pytest.raises(OSError) as caught:
            (root / "g").write_text("x")
        assert caught.value.errno == errno.EROFS
    with pytest.raises(NotFound):
        sn.stat("v")


def test_error_in_the_block_unmounts_and_removes(sn: OverlaySnapshotter, base: str,
                                                 tmp_path: Path) -> None:
    target = tmp_path / "mnt"
    target.mkdir()
    with pytest.raises(RuntimeError), \
            mounted_snapshot(sn, "k", base, target=target, keep=True):
        raise RuntimeError("boom")
    assert mounts_under(target) == []
    assert target.is_dir()
    with pytest.raises(NotFound):
        sn.stat("k")


def test_keep_leaves_the_active_snapshot_for_commit(sn: OverlaySnapshotter, base: str) -> None:
    with mounted_snapshot(sn, "k", base, keep=True) as root:
        (root / "g").write_text("g\n")
    assert (sn.upperdir("k") / "g").read_text() == "g\n"
    sn.commit("top", "k")
    assert sn.stat("top").parent == base


def test_failed_prepare_leaves_nothing(sn: OverlaySnapshotter) -> None:
    with pytest.raises(NotFound), mounted_snapshot(sn, "k", "missing-parent"):
        pass
    with pytest.raises(NotFound):
        sn.stat("k")
