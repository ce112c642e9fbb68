"""The overlay snapshotter: the conformance suite plus overlay- and mount-specific cases."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerstore.errors import FailedPrecondition, InvalidArgument, MountError, NotFound
from layerstore.snapshots import Mount
from layerstore.snapshots.mount import (
    MS_BIND,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    mount_all,
    mounted,
    mountinfo,
    mounts_under,
    parse_options,
    unmount,
)
from layerstore.snapshots.overlay import (
    MAX_LAYERS,
    OVERLAY_OPTIONS,
    USERNS_OVERLAY_OPTIONS,
    OverlaySnapshotter,
)
from layerstore.testing.snapshotter_suite import SnapshotterSuite, no_mount_left
from layerstore.userns import in_user_namespace


class TestOverlayConformance(SnapshotterSuite):
    """The shared snapshotter suite on overlayfs."""

    def make_snapshotter(self, tmp_path: Path) -> OverlaySnapshotter:
        """An overlay snapshotter rooted in ``tmp_path``."""
        return OverlaySnapshotter(tmp_path)


@pytest.fixture(autouse=True)
def _no_mount_left(tmp_path: Path) -> Iterator[None]:
    """Fail (after cleaning up) a test that leaves a mount below its tmp_path."""
    with no_mount_left(tmp_path):
        yield


@pytest.fixture
def sn(tmp_path: Path) -> Iterator[OverlaySnapshotter]:
    """A fresh overlay snapshotter."""
    with OverlaySnapshotter(tmp_path / "root") as snapshotter:
        yield snapshotter


def commit_empty(sn: OverlaySnapshotter, name: str, parent: str | None) -> None:
    """Commit a layer with no changes, without mounting."""
    sn.prepare(f"{name}-active", parent)
    sn.commit(name, f"{name}-active")


def snapshot_id(sn: OverlaySnapshotter, key: str) -> int:
    """The directory id of ``key``."""
    return int(sn.upperdir(key).parent.name)


def mine(tmp_path: Path) -> list[str]:
    """mountinfo lines whose mount point is below ``tmp_path``."""
    root = str(tmp_path)
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return [line for line in f if f" {root}" in line]


# -- layout and mount data ------------------------------------------------------------------------


def test_layout(sn: OverlaySnapshotter) -> None:
    """Each snapshot lives in ``snapshots/<small int>/{fs,work}`` next to ``metadata.db``."""
    sn.prepare("a")
    sid = snapshot_id(sn, "a")
    assert sid == 1
    base = sn.root / "snapshots" / str(sid)
    assert (base / "fs").is_dir() and (base / "work").is_dir()
    assert sn.upperdir("a") == base / "fs"
    assert (sn.root / "metadata.db").is_file()
    conn = sqlite3.connect(sn.root / "metadata.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT id, name, kind FROM snapshots").fetchall() == [
            (1, "a", "active")
        ]
    finally:
        conn.close()


def test_active_without_parent_is_a_bind(sn: OverlaySnapshotter) -> None:
    """An active snapshot on nothing is a read-write bind of its own fs."""
    assert sn.prepare("a") == [Mount("bind", str(sn.upperdir("a")), ("rbind", "rw"))]


def test_active_with_parents_is_an_overlay(sn: OverlaySnapshotter) -> None:
    """lowerdir is the chain nearest first, relative to ``Mount.workdir``."""
    commit_empty(sn, "l1", None)
    commit_empty(sn, "l2", "l1")
    commit_empty(sn, "l3", "l2")
    mounts = sn.prepare("work", "l3")
    ids = [snapshot_id(sn, k) for k in ("l3", "l2", "l1", "work")]
    own = sn.root / "snapshots" / str(ids[3])
    assert mounts == [
        Mount(
            "overlay",
            "overlay",
            (
                *(USERNS_OVERLAY_OPTIONS if in_user_namespace() else OVERLAY_OPTIONS),
                f"lowerdir={ids[0]}/fs:{ids[1]}/fs:{ids[2]}/fs",
                f"upperdir={own}/fs",
                f"workdir={own}/work",
            ),
            workdir=str(sn.root / "snapshots"),
        )
    ]
    assert sn.mounts("work") == mounts


def test_view_mounts(sn: OverlaySnapshotter) -> None:
    """Views: empty ro bind, ro bind of a single parent, ro overlay of a chain."""
    commit_empty(sn, "l1", None)
    commit_empty(sn, "l2", "l1")
    assert sn.view("none") == [Mount("bind", str(sn.upperdir("none")), ("rbind", "ro"))]
    assert sn.view("one", "l1") == [Mount("bind", str(sn.upperdir("l1")), ("rbind", "ro"))]
    l1, l2 = snapshot_id(sn, "l1"), snapshot_id(sn, "l2")
    assert sn.view("two", "l2") == [
        Mount(
            "overlay",
            "overlay",
            ("ro", *(("userxattr",) if in_user_namespace() else ()), f"lowerdir={l2}/fs:{l1}/fs"),
            workdir=str(sn.root / "snapshots"),
        )
    ]


def test_chain_at_overlay_limit_mounts(sn: OverlaySnapshotter, tmp_path: Path) -> None:
    """500 lower layers fit one page and mount; a 501st is ``InvalidArgument``."""
    with OverlaySnapshotter(tmp_path / "fast", sync=False) as fast:
        parent = None
        for i in range(MAX_LAYERS + 1):
            commit_empty(fast, f"l{i}", parent)
            parent = f"l{i}"
        mounts = fast.prepare("top", f"l{MAX_LAYERS - 1}")
        (fast.upperdir(f"l{MAX_LAYERS - 1}") / "deep").write_text("500")
        (fast.upperdir("l0") / "bottom").write_text("1")
        assert len(parse_options(mounts[0].options).data) < 4096
        (tmp_path / "mnt-top").mkdir()
        with mounted(mounts, tmp_path / "mnt-top") as root:
            assert sorted(os.listdir(root)) == ["bottom", "deep"]
        with pytest.raises(InvalidArgument, match="too-deep"):
            fast.prepare("too-deep", f"l{MAX_LAYERS}")
        with pytest.raises(InvalidArgument, match="too-deep-view"):
            fast.view("too-deep-view", f"l{MAX_LAYERS}")
        with pytest.raises(NotFound):
            fast.stat("too-deep")
        live = {str(snapshot_id(fast, i.name)) for i in fast.walk()}
        assert set(os.listdir(fast.root / "snapshots")) == live


def test_options_longer_than_a_page_refused(tmp_path: Path) -> None:
    """Mount data over one page is ``InvalidArgument`` before anything is created."""
    deep = tmp_path.joinpath(*["d" * 200] * 2)
    with OverlaySnapshotter(deep, sync=False) as sn:
        parent = None
        for depth in range(MAX_LAYERS):
            key = f"l{depth}-active"
            try:
                sn.prepare(key, parent)
            except InvalidArgument as exc:
                assert f"{key!r}" in str(exc) and "bytes" in str(exc)
                break
            sn.commit(f"l{depth}", key)
            parent = f"l{depth}"
        else:
            pytest.fail("a chain of 500 layers under a 400-byte root was not refused")
        assert depth > 300
        with pytest.raises(NotFound):
            sn.stat(key)
        live = {str(snapshot_id(sn, i.name)) for i in sn.walk()}
        assert set(os.listdir(sn.root / "snapshots")) == live
        sn.view("view-fits", parent)


def test_root_with_separators_in_its_path(tmp_path: Path) -> None:
    """Commas, colons and spaces in the root are escaped in the overlay options."""
    with OverlaySnapshotter(tmp_path / "odd, name: here") as sn:
        commit_empty(sn, "base", None)
        (sn.upperdir("base") / "low").write_text("l")
        mounts = sn.prepare("work", "base")
        assert f"upperdir={tmp_path}/odd\\, name\\: here/snapshots/2/fs" in mounts[0].options
        target = tmp_path / "mnt"
        target.mkdir()
        with mounted(mounts, target) as root:
            (root / "high").write_text("h")
            assert sorted(os.listdir(root)) == ["high", "low"]
        assert os.listdir(sn.upperdir("work")) == ["high"]


# -- snapshotter specifics ------------------------------------------------------------------------


def test_usage_counts_hardlinks_once(sn: OverlaySnapshotter) -> None:
    """size is st_blocks*512 of regular files, once per inode; inodes exclude fs itself."""
    sn.prepare("a")
    fs = sn.upperdir("a")
    assert sn.usage("a").size == 0 and sn.usage("a").inodes == 0
    (fs / "d").mkdir()
    (fs / "d/big").write_bytes(os.urandom(1 << 20))
    os.link(fs / "d/big", fs / "big-again")
    os.symlink("d/big", fs / "link")
    usage = sn.usage("a")
    assert usage.size == os.stat(fs / "d/big").st_blocks * 512
    assert usage.size >= 1 << 20
    assert usage.inodes == 3


def test_remove_deletes_the_directory(sn: OverlaySnapshotter) -> None:
    """``remove`` drops the row and the snapshot's directory."""
    sn.prepare("a")
    (sn.upperdir("a") / "file").write_text("x")
    base = sn.upperdir("a").parent
    sn.remove("a")
    assert not base.exists()
    assert os.listdir(sn.root / "snapshots") == []


def test_bad_arguments(sn: OverlaySnapshotter) -> None:
    """Empty keys and non-string labels are ``InvalidArgument``."""
    with pytest.raises(InvalidArgument):
        sn.prepare("")
    with pytest.raises(InvalidArgument, match="label"):
        sn.prepare("a", labels={"k": 1})  # type: ignore[dict-item]
    assert list(sn.walk()) == []


def test_closed_snapshotter_refuses(tmp_path: Path) -> None:
    """Calls after ``close`` fail with a typed error; closing twice is harmless."""
    sn = OverlaySnapshotter(tmp_path / "root")
    sn.close()
    sn.close()
    with pytest.raises(FailedPrecondition, match="closed"):
        sn.stat("a")


# -- crash consistency ----------------------------------------------------------------------------


def assert_consistent(root: Path) -> None:
    """Every row has its directory and every directory has its row."""
    with OverlaySnapshotter(root, sync=False) as sn:
        infos = list(sn.walk())
        ids = {str(snapshot_id(sn, i.name)) for i in infos}
        assert set(os.listdir(root / "snapshots")) == ids
        for info in infos:
            assert sn.upperdir(info.name).is_dir()
            assert (sn.upperdir(info.name).parent / "work").is_dir()
            if info.parent is not None:
                assert sn.stat(info.parent).kind.value == "committed"


def test_leftovers_of_a_crash_are_cleaned_on_open(tmp_path: Path) -> None:
    """Directories without a row (half-made, half-removed, orphaned) go on open."""
    root = tmp_path / "root"
    with OverlaySnapshotter(root) as sn:
        sn.prepare("keep")
        (sn.upperdir("keep") / "data").write_text("kept")
    for leftover in ("new-abc123", "rm-7", "42"):
        (root / "snapshots" / leftover / "fs" / "sub").mkdir(parents=True)
    assert_consistent(root)
    with OverlaySnapshotter(root) as sn:
        assert (sn.upperdir("keep") / "data").read_text() == "kept"
        sn.prepare("next")
        assert (sn.upperdir("next")).is_dir()


def test_failure_between_row_and_rename_leaves_nothing(
    sn: OverlaySnapshotter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When publishing the directory fails, the row is rolled back and the temp dir removed."""
    sn.prepare("before")

    def broken_rename(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "rename", broken_rename)
        with pytest.raises(OSError):
            sn.prepare("victim")
    with pytest.raises(NotFound):
        sn.stat("victim")
    assert os.listdir(sn.root / "snapshots") == [str(snapshot_id(sn, "before"))]
    sn.prepare("victim")


CRASH_WORKLOAD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from layerstore.snapshots.overlay import OverlaySnapshotter

    sn = OverlaySnapshotter(Path(sys.argv[1]), sync=False)
    round_, i, parent = sys.argv[2], 0, None
    while True:
        key = f"{round_}-{i}"
        sn.prepare(key + "-active", parent)
        (sn.upperdir(key + "-active") / f"f{i}").write_text(str(i))
        sn.commit(key, key + "-active")
        sn.view(key + "-view", key)
        sn.remove(key + "-view")
        if i % 3 == 2:
            sn.prepare(key + "-tmp")
            sn.remove(key + "-tmp")
        parent = key
        print(i, flush=True)
        i += 1
    """
)


def test_kill_during_changes_keeps_metadata_consistent(tmp_path: Path) -> None:
    """SIGKILL at an arbitrary point of prepare/commit/view/remove leaves a consistent store."""
    root = tmp_path / "root"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for round_ in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-c", CRASH_WORKLOAD, str(root), f"r{round_}"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdout is not None
        for _ in range(5 + 7 * round_):
            assert proc.stdout.readline(), "workload died"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert_consistent(root)
    with OverlaySnapshotter(root, sync=False) as sn:
        committed = [i.name for i in sn.walk() if i.kind.value == "committed"]
        assert len(committed) >= sum(5 + 7 * r for r in range(8))


# -- performing mounts ----------------------------------------------------------------------------


def test_parse_options() -> None:
    """Flag words become flags, propagation separate, the rest the data string."""
    parsed = parse_options(("rbind", "ro", "nosuid", "rprivate", "lowerdir=a:b", "size=1m"))
    assert parsed.flags == MS_BIND | MS_REC | MS_RDONLY | MS_NOSUID
    assert parsed.propagation == MS_PRIVATE | MS_REC
    assert parsed.data == "lowerdir=a:b,size=1m"
    assert parse_options(("ro", "rw")).flags == 0


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_mounted_unmounts_when_the_body_raises(
    sn: OverlaySnapshotter, tmp_path: Path, error: type[BaseException]
) -> None:
    """No mount survives the block, whatever it raises."""
    commit_empty(sn, "base", None)
    before = mine(tmp_path)
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(error), mounted(sn.prepare("work", "base"), target) as root:
        (root / "f").write_text("x")
        assert len(mine(tmp_path)) == len(before) + 1
        raise error()
    assert mine(tmp_path) == before
    assert (sn.upperdir("work") / "f").read_text() == "x"


def test_mounted_temporary_target(sn: OverlaySnapshotter) -> None:
    """Without a target a temporary directory is used and removed afterwards."""
    with mounted(sn.prepare("a")) as root:
        (root / "f").write_text("x")
        assert any(mi.mount_point == str(root) for mi in mountinfo())
    assert not root.exists()
    assert not any(mi.mount_point == str(root) for mi in mountinfo())
    assert (sn.upperdir("a") / "f").read_text() == "x"


def test_mount_error_names_the_mount(tmp_path: Path) -> None:
    """A failing mount raises ``MountError`` with the type, source and errno text."""
    bad = Mount("overlay", "overlay", ("lowerdir=missing1:missing2",), workdir=str(tmp_path))
    expected = r"overlay mount .*No such file or directory \(ENOENT\)"
    with pytest.raises(MountError, match=expected), mounted([bad]):
        pass
    with pytest.raises(MountError, match="bind mount of '/nonexistent/src'"):
        mount_all([Mount("bind", "/nonexistent/src", ("rbind",))], tmp_path)


def test_mount_all_undoes_earlier_mounts(tmp_path: Path) -> None:
    """When a later mount fails, the earlier ones are unmounted."""
    src = tmp_path / "src"
    src.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    before = mine(tmp_path)
    with pytest.raises(MountError):
        mount_all(
            [Mount("bind", str(src), ("rbind",)), Mount("overlay", "overlay", ("lowerdir=/x:/y",))],
            target,
        )
    assert mine(tmp_path) == before


def test_workdir_mount_keeps_the_process_cwd(sn: OverlaySnapshotter, tmp_path: Path) -> None:
    """Relative lowerdirs resolve in ``Mount.workdir``; the process's cwd never moves."""
    commit_empty(sn, "l1", None)
    (sn.upperdir("l1") / "one").write_text("1")
    commit_empty(sn, "l2", "l1")
    target = tmp_path / "mnt"
    target.mkdir()
    cwd = os.getcwd()
    assert not (Path(cwd) / f"{snapshot_id(sn, 'l1')}/fs").exists()
    with mounted(sn.view("v", "l2"), target) as root:
        assert os.getcwd() == cwd
        assert (root / "one").read_text() == "1"
    assert os.getcwd() == cwd


def test_unmount_takes_submounts(tmp_path: Path) -> None:
    """An rbind that carried a submount along is fully unmounted, deepest first."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    mount_all([Mount("tmpfs", "tmpfs", ("size=1m",))], src / "sub")
    try:
        (src / "sub" / "inside").write_text("x")
        target = tmp_path / "with space"
        target.mkdir()
        with mounted([Mount("bind", str(src), ("rbind", "ro"))], target) as root:
            assert (root / "sub" / "inside").read_text() == "x"
            assert len(mounts_under(target)) == 2
        assert mounts_under(target) == []
    finally:
        unmount(src / "sub")
    assert not (src / "sub" / "inside").exists()
