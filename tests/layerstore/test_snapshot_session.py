"""mounted_snapshot and snapshot_session: prepare or view → mount → yield → unmount →
commit or remove, on every path."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerstore.errors import AlreadyExists, NotFound
from layerstore.mountinfo import mounts_under
from layerstore.snapshots import Kind, OverlaySnapshotter, mounted_snapshot, snapshot_session


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


def test_session_commit_names_the_active_snapshot(sn: OverlaySnapshotter, base: str) -> None:
    with snapshot_session(sn, "k", base, labels={"a": "b"}) as session:
        with session.mounted() as root:
            (root / "g").write_text("g\n")
            point = root
        assert mounts_under(point) == []
        assert (session.upperdir / "g").read_text() == "g\n"
        assert session.commit("top", {"layer": "1"})
    assert sn.stat("top").parent == base
    assert sn.stat("top").labels == {"a": "b", "layer": "1"}
    with pytest.raises(NotFound):
        sn.stat("k")


def test_session_without_a_mount_writes_the_upperdir(sn: OverlaySnapshotter, base: str) -> None:
    with snapshot_session(sn, "k", base) as session:
        (session.upperdir / "g").write_text("g\n")
        session.commit("top")
    with mounted_snapshot(sn, "v", "top", readonly=True) as root:
        assert sorted(p.name for p in root.iterdir()) == ["f", "g"]


def test_session_commit_to_an_existing_name(sn: OverlaySnapshotter, base: str) -> None:
    with snapshot_session(sn, "k", None) as session:
        with pytest.raises(AlreadyExists):
            session.commit(base)
        assert sn.stat("k").kind is Kind.ACTIVE
        assert session.commit(base, exist_ok=True) is False
    with pytest.raises(NotFound):
        sn.stat("k")
    assert (sn.upperdir(base) / "f").read_text() == "base\n"


def test_session_not_committed_is_removed(sn: OverlaySnapshotter, base: str) -> None:
    with snapshot_session(sn, "k", base) as session, session.mounted():
        pass
    with pytest.raises(NotFound):
        sn.stat("k")


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_session_error_unmounts_and_removes_even_when_kept(
    sn: OverlaySnapshotter, base: str, tmp_path: Path, error: type[BaseException]
) -> None:
    target = tmp_path / "mnt"
    target.mkdir()
    with pytest.raises(error), snapshot_session(sn, "k", base) as session:
        session.keep()
        with session.mounted(target):
            raise error("boom")
    assert mounts_under(target) == []
    assert [info.name for info in sn.walk()] == [base]


def test_session_kept_key_stays(sn: OverlaySnapshotter, base: str) -> None:
    with snapshot_session(sn, "k", base) as session:
        session.keep()
    assert sn.stat("k").kind is Kind.ACTIVE
    sn.remove("k")
