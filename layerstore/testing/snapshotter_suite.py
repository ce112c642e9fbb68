"""A conformance suite that every :class:`~layerstore.snapshots.snapshotter.Snapshotter` runs.

Subclass :class:`SnapshotterSuite` in a test module, name the subclass ``Test…`` and implement
:meth:`SnapshotterSuite.make_snapshotter`::

    class TestOverlay(SnapshotterSuite):
        def make_snapshotter(self, tmp_path):
            return OverlaySnapshotter(tmp_path / "root")

The cases follow containerd's snapshotter test suite. They mount for real through
:func:`layerstore.snapshots.mount.mounted` (so they need root), always below ``tmp_path``,
and fail a test that leaves a mount behind (after unmounting it).
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import shutil
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from layerstore.archive.whiteout import opaque_xattr
from layerstore.errors import AlreadyExists, FailedPrecondition, NotFound
from layerstore.snapshots.mount import mounted, mounts_under, unmount_new
from layerstore.snapshots.snapshotter import Kind, Snapshotter
from layerstore.testing.tree import Node, expect_files, read_tree

Apply = Callable[[Path], object]
Mnt = Callable[[], Path]


@contextmanager
def no_mount_left(path: Path) -> Iterator[None]:
    """Fail (after unmounting them) when the block leaves new mounts at or below ``path``."""
    before = {mi.mount_id for mi in mounts_under(path)}
    yield
    left = [mi.mount_point for mi in mounts_under(path) if mi.mount_id not in before]
    unmount_new(path, before)
    assert not left, f"mounts left behind: {left}"


def move(src: Path, dst: Path) -> None:
    """``mv``: rename, or copy and delete where the filesystem refuses (``EXDEV``)."""
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        if src.is_dir() and not src.is_symlink():
            shutil.copytree(src, dst, symlinks=True, copy_function=_copy_with_owner)
            _copy_owner(src, dst)
            shutil.rmtree(src)
        else:
            _copy_with_owner(src, dst)
            src.unlink()


def _copy_owner(src: Path | str, dst: Path | str) -> None:
    st = os.lstat(src)
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)


def _copy_with_owner(src: Path | str, dst: Path | str) -> None:
    shutil.copy2(src, dst, follow_symlinks=False)
    _copy_owner(src, dst)


def write(rel: str, content: str, mode: int = 0o644) -> Apply:
    """An apply step writing a file (parents created)."""

    def apply(root: Path) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(mode)

    return apply


class SnapshotterSuite:
    """The conformance cases; subclasses provide :meth:`make_snapshotter`."""

    def make_snapshotter(self, tmp_path: Path) -> Snapshotter:
        """A snapshotter keeping its state in directory ``tmp_path`` (which may not exist
        yet); called again with the same path after ``close()`` it reopens that state."""
        raise NotImplementedError

    # -- fixtures and helpers -------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _no_mount_left(self, tmp_path: Path) -> Iterator[None]:
        with no_mount_left(tmp_path):
            yield

    @pytest.fixture
    def sn(self, tmp_path: Path) -> Iterator[Snapshotter]:
        """The snapshotter under test, closed afterwards."""
        snapshotter = self.make_snapshotter(tmp_path / "snapshotter")
        try:
            yield snapshotter
        finally:
            snapshotter.close()

    @pytest.fixture
    def mnt(self, tmp_path: Path) -> Mnt:
        """A factory of fresh mount targets below ``tmp_path``."""
        counter = itertools.count()
        lock = threading.Lock()

        def make() -> Path:
            with lock:
                path = tmp_path / "mnt" / str(next(counter))
            path.mkdir(parents=True)
            return path

        return make

    @staticmethod
    def layer(
        sn: Snapshotter,
        mnt: Mnt,
        name: str,
        parent: str | None,
        *steps: Apply,
    ) -> None:
        """Prepare on ``parent``, run ``steps`` on the mounted tree, commit as ``name``."""
        key = f"{name}-active"
        with mounted(sn.prepare(key, parent), mnt()) as root:
            for step in steps:
                step(root)
        sn.commit(name, key)

    @staticmethod
    @contextmanager
    def viewed(sn: Snapshotter, mnt: Mnt, parent: str | None) -> Iterator[Path]:
        """A mounted read-only view of ``parent``, removed afterwards."""
        key = f"view-of-{parent}-{next(_view_ids)}"
        mounts = sn.view(key, parent)
        try:
            with mounted(mounts, mnt()) as root:
                yield root
        finally:
            sn.remove(key)

    def tree_of(self, sn: Snapshotter, mnt: Mnt, parent: str) -> dict[str, Node]:
        """The file tree a view of ``parent`` shows."""
        with self.viewed(sn, mnt, parent) as root:
            return read_tree(root)

    # -- lifecycle ------------------------------------------------------------------------------

    def test_prepare_commit_view(self, sn: Snapshotter, mnt: Mnt) -> None:
        """Files written into a prepared snapshot show in a view of its commit."""
        mounts = sn.prepare("base-active")
        assert sn.stat("base-active").kind is Kind.ACTIVE
        with mounted(mounts, mnt()) as root:
            assert read_tree(root) == {}
            (root / "etc").mkdir(mode=0o755)
            (root / "etc/hostname").write_text("box\n")
            os.symlink("/etc/hostname", root / "hostname")
            os.link(root / "etc/hostname", root / "etc/hardlink")
        sn.commit("base", "base-active")
        info = sn.stat("base")
        assert (info.name, info.kind, info.parent) == ("base", Kind.COMMITTED, None)
        with pytest.raises(NotFound, match="base-active"):
            sn.stat("base-active")
        with self.viewed(sn, mnt, "base") as root:
            tree = read_tree(root)
            assert os.stat(root / "etc/hostname").st_ino == os.stat(root / "etc/hardlink").st_ino
        assert expect_files(tree) == {"etc/hostname": "box\n", "etc/hardlink": "box\n"}
        assert tree["hostname"].content == "/etc/hostname"
        with mounted(sn.prepare("base-active"), mnt()) as root:  # the key is free again
            assert read_tree(root) == {}

    def test_mounts_again(self, sn: Snapshotter, mnt: Mnt) -> None:
        """``mounts`` repeats what ``prepare``/``view`` returned; a committed one has none."""
        self.layer(sn, mnt, "base", None, write("a", "1"))
        assert sn.prepare("work", "base") == sn.mounts("work")
        assert sn.view("look", "base") == sn.mounts("look")
        with pytest.raises(FailedPrecondition, match="base"):
            sn.mounts("base")
        with pytest.raises(NotFound, match="missing"):
            sn.mounts("missing")

    def test_view_of_nothing_is_empty(self, sn: Snapshotter, mnt: Mnt) -> None:
        """A view without a parent is an empty read-only tree."""
        mounts = sn.view("nothing")
        assert sn.stat("nothing").kind is Kind.VIEW
        with mounted(mounts, mnt()) as root:
            assert read_tree(root) == {}
            with pytest.raises(OSError) as exc:
                (root / "x").write_text("x")
            assert exc.value.errno == errno.EROFS

    def test_transitivity(self, sn: Snapshotter, mnt: Mnt) -> None:
        """A three-layer chain shows the union, later layers winning."""
        self.layer(sn, mnt, "l1", None, write("a", "a1"), write("dir/x", "x1"))
        self.layer(sn, mnt, "l2", "l1", write("b", "b2"), write("dir/y", "y2"))
        self.layer(sn, mnt, "l3", "l2", write("a", "a3"), write("c", "c3"))
        assert sn.stat("l3").parent == "l2"
        union = {"a": "a3", "b": "b2", "c": "c3", "dir/x": "x1", "dir/y": "y2"}
        assert expect_files(self.tree_of(sn, mnt, "l3")) == union
        assert expect_files(self.tree_of(sn, mnt, "l1")) == {"a": "a1", "dir/x": "x1"}
        with mounted(sn.prepare("on-l3", "l3"), mnt()) as root:
            assert (root / "dir/y").read_text() == "y2"

    def test_active_snapshots_are_isolated(self, sn: Snapshotter, mnt: Mnt) -> None:
        """Two actives on one parent do not see each other's changes nor change the parent."""
        self.layer(sn, mnt, "base", None, write("shared", "0"))
        with (
            mounted(sn.prepare("left", "base"), mnt()) as left,
            mounted(sn.prepare("right", "base"), mnt()) as right,
        ):
            (left / "shared").write_text("left")
            (right / "only-right").write_text("r")
            assert (right / "shared").read_text() == "0"
            assert not (left / "only-right").exists()
        assert expect_files(self.tree_of(sn, mnt, "base")) == {"shared": "0"}

    # -- deletions, renames, metadata -----------------------------------------------------------

    def test_delete_in_lower_layer(self, sn: Snapshotter, mnt: Mnt) -> None:
        """A file deleted in a child is gone from views of the child, kept in the parent's."""
        self.layer(sn, mnt, "parent", None, write("keep", "k"), write("gone", "g"))
        self.layer(sn, mnt, "child", "parent", lambda r: (r / "gone").unlink())
        assert expect_files(self.tree_of(sn, mnt, "child")) == {"keep": "k"}
        assert expect_files(self.tree_of(sn, mnt, "parent")) == {"keep": "k", "gone": "g"}
        self.layer(sn, mnt, "grandchild", "child", write("new", "n"))
        assert expect_files(self.tree_of(sn, mnt, "grandchild")) == {"keep": "k", "new": "n"}

    def test_deleted_files_in_child_are_whiteouts(self, sn: Snapshotter, mnt: Mnt) -> None:
        """Deleted files and directories show in the child's upperdir as 0/0 devices."""

        def delete(root: Path) -> None:
            (root / "f").unlink()
            shutil.rmtree(root / "d")
            (root / "sub/inner").unlink()

        self.layer(
            sn, mnt, "parent", None, write("f", "f"), write("d/x", "x"), write("sub/inner", "i")
        )
        self.layer(sn, mnt, "child", "parent", delete)
        assert self.tree_of(sn, mnt, "child").keys() == {"sub"}
        upper = sn.upperdir("child")
        for rel in ("f", "d", "sub/inner"):
            st = os.lstat(upper / rel)
            assert stat.S_ISCHR(st.st_mode), rel
            assert st.st_rdev == os.makedev(0, 0), rel

    def test_rename_directory_across_layers(self, sn: Snapshotter, mnt: Mnt) -> None:
        """A directory (and a file) from a lower layer renamed in a child moves with content."""

        def rename(root: Path) -> None:
            move(root / "olddir", root / "newdir")
            move(root / "oldfile", root / "newfile")

        self.layer(
            sn,
            mnt,
            "parent",
            None,
            write("olddir/a", "a"),
            write("olddir/deep/b", "b", 0o600),
            write("oldfile", "f"),
        )
        self.layer(sn, mnt, "child", "parent", rename)
        child = self.tree_of(sn, mnt, "child")
        assert expect_files(child) == {"newdir/a": "a", "newdir/deep/b": "b", "newfile": "f"}
        assert child["newdir/deep/b"].mode == 0o600
        assert expect_files(self.tree_of(sn, mnt, "parent")) == {
            "olddir/a": "a",
            "olddir/deep/b": "b",
            "oldfile": "f",
        }

    def test_directory_permissions_preserved(self, sn: Snapshotter, mnt: Mnt) -> None:
        """Modes and owners of lower directories survive a copy-up in a child."""

        def setup(root: Path) -> None:
            d = root / "srv/data"
            d.mkdir(parents=True)
            os.chown(root / "srv", 2000, 2001)
            os.chmod(root / "srv", 0o710)
            os.chown(d, 1000, 1001)
            os.chmod(d, 0o1751)
            (d / "f").write_text("f")
            os.chown(d / "f", 1002, 1003)
            os.chmod(d / "f", 0o4755)

        self.layer(sn, mnt, "parent", None, setup)
        self.layer(sn, mnt, "child", "parent", write("srv/data/g", "g"))
        for name in ("parent", "child"):
            tree = self.tree_of(sn, mnt, name)
            assert (tree["srv"].mode, tree["srv"].uid, tree["srv"].gid) == (0o710, 2000, 2001)
            data = tree["srv/data"]
            assert (data.mode, data.uid, data.gid) == (0o1751, 1000, 1001)
            f = tree["srv/data/f"]
            assert (f.mode, f.uid, f.gid, f.content) == (0o4755, 1002, 1003, b"f")
        upper_dir = os.lstat(sn.upperdir("child") / "srv/data")
        assert (stat.S_IMODE(upper_dir.st_mode), upper_dir.st_uid) == (0o1751, 1000)

    def test_chown_chmod_in_upper(self, sn: Snapshotter, mnt: Mnt) -> None:
        """chmod/chown of a lower file in a child changes only the child's view."""

        def change(root: Path) -> None:
            os.chown(root / "f", 42, 43)
            os.chmod(root / "f", 0o600)
            os.chown(root / "d", 44, 45)
            os.chmod(root / "d", 0o700)

        self.layer(sn, mnt, "parent", None, write("f", "content"), write("d/x", "x"))
        self.layer(sn, mnt, "child", "parent", change)
        child = self.tree_of(sn, mnt, "child")
        assert child["f"] == Node("file", 0o600, 42, 43, b"content")
        assert (child["d"].mode, child["d"].uid, child["d"].gid) == (0o700, 44, 45)
        parent = self.tree_of(sn, mnt, "parent")
        assert parent["f"] == Node("file", 0o644, 0, 0, b"content")
        assert (parent["d"].mode, parent["d"].uid) == (0o755, 0)
        copied = os.lstat(sn.upperdir("child") / "f")
        assert (copied.st_uid, copied.st_size) == (42, len("content"))

    def test_opaque_directory(self, sn: Snapshotter, mnt: Mnt) -> None:
        """``rm -rf d && mkdir d`` in a child hides everything d held below."""

        def recreate(root: Path) -> None:
            shutil.rmtree(root / "d")
            (root / "d").mkdir()
            (root / "d/new").write_text("new")

        self.layer(sn, mnt, "parent", None, write("d/old1", "1"), write("d/sub/old2", "2"))
        self.layer(sn, mnt, "child", "parent", recreate)
        assert expect_files(self.tree_of(sn, mnt, "child")) == {"d/new": "new"}
        assert os.getxattr(sn.upperdir("child") / "d", opaque_xattr()) == b"y"
        self.layer(sn, mnt, "grandchild", "child", write("d/more", "m"))
        assert expect_files(self.tree_of(sn, mnt, "grandchild")) == {"d/new": "new", "d/more": "m"}

    def test_view_is_read_only(self, sn: Snapshotter, mnt: Mnt) -> None:
        """Writes into a view of one layer or of a chain fail with EROFS."""
        self.layer(sn, mnt, "one", None, write("f", "1"), write("d/g", "g"))
        self.layer(sn, mnt, "two", "one", write("h", "2"))
        for parent in ("one", "two"):
            with self.viewed(sn, mnt, parent) as root:
                attempts: list[Callable[[], object]] = [
                    functools.partial((root / "new").write_text, "x"),
                    functools.partial((root / "f").write_text, "x"),
                    (root / "f").unlink,
                    (root / "dir").mkdir,
                    functools.partial(os.chmod, root / "d", 0o700),
                ]
                for attempt in attempts:
                    with pytest.raises(OSError) as exc:
                        attempt()
                    assert exc.value.errno == errno.EROFS, parent
                assert (root / "f").read_text() == "1"

    # -- errors ---------------------------------------------------------------------------------

    def test_view_cannot_be_committed(self, sn: Snapshotter, mnt: Mnt) -> None:
        """Only an active snapshot can be committed."""
        self.layer(sn, mnt, "base", None, write("a", "1"))
        sn.view("look", "base")
        with pytest.raises(FailedPrecondition, match="look"):
            sn.commit("looked", "look")
        with pytest.raises(FailedPrecondition, match="base"):
            sn.commit("again", "base")
        with pytest.raises(NotFound, match="ghost"):
            sn.commit("x", "ghost")
        assert sn.stat("look").kind is Kind.VIEW

    def test_duplicate_key_already_exists(self, sn: Snapshotter, mnt: Mnt) -> None:
        """Keys and names share one namespace."""
        self.layer(sn, mnt, "base", None)
        sn.prepare("active")
        sn.view("view", "base")
        for key in ("base", "active", "view"):
            with pytest.raises(AlreadyExists, match=key):
                sn.prepare(key)
            with pytest.raises(AlreadyExists, match=key):
                sn.view(key, "base")
        with pytest.raises(AlreadyExists, match="view"):
            sn.commit("view", "active")
        assert sn.stat("active").kind is Kind.ACTIVE

    def test_unknown_parent_not_found(self, sn: Snapshotter) -> None:
        """A missing parent is ``NotFound`` and creates nothing."""
        with pytest.raises(NotFound, match="no-such-parent"):
            sn.prepare("child", "no-such-parent")
        with pytest.raises(NotFound, match="no-such-parent"):
            sn.view("look", "no-such-parent")
        assert list(sn.walk()) == []

    def test_parent_not_committed(self, sn: Snapshotter) -> None:
        """An active snapshot or view cannot be a parent."""
        sn.prepare("active")
        sn.view("look")
        for parent in ("active", "look"):
            with pytest.raises(FailedPrecondition, match=parent):
                sn.prepare("child", parent)
            with pytest.raises(FailedPrecondition, match=parent):
                sn.view("child", parent)
        with pytest.raises(NotFound, match="child"):
            sn.stat("child")

    def test_remove_parent_with_children_refused(self, sn: Snapshotter, mnt: Mnt) -> None:
        """A committed parent stays while an active, view or committed child names it."""
        self.layer(sn, mnt, "base", None, write("a", "1"))
        self.layer(sn, mnt, "mid", "base")
        sn.view("look", "mid")
        sn.prepare("work", "mid")
        for key in ("base", "mid"):
            with pytest.raises(FailedPrecondition, match=key):
                sn.remove(key)
        sn.remove("look")
        with pytest.raises(FailedPrecondition, match="mid"):
            sn.remove("mid")
        sn.remove("work")
        sn.remove("mid")
        sn.remove("base")
        assert list(sn.walk()) == []

    def test_remove_then_stat_not_found(self, sn: Snapshotter, mnt: Mnt) -> None:
        """A removed snapshot is gone, its key free again."""
        self.layer(sn, mnt, "base", None, write("a", "1"))
        sn.prepare("active", "base")
        sn.view("look", "base")
        for key in ("active", "look", "base"):
            sn.remove(key)
            with pytest.raises(NotFound, match=key):
                sn.stat(key)
            with pytest.raises(NotFound, match=key):
                sn.remove(key)
        with mounted(sn.prepare("base"), mnt()) as root:
            assert read_tree(root) == {}

    def test_errors_name_the_key(self, sn: Snapshotter) -> None:
        """Every lookup error names the key it was about."""
        for call in (sn.stat, sn.usage, sn.mounts, sn.remove, sn.upperdir):
            with pytest.raises(NotFound, match="some/odd key"):
                call("some/odd key")

    # -- metadata -------------------------------------------------------------------------------

    def test_labels(self, sn: Snapshotter, mnt: Mnt) -> None:
        """Labels are kept; commit merges its labels over the active snapshot's."""
        sn.prepare("active", labels={"owner": "ci", "stage": "build"})
        assert sn.stat("active").labels == {"owner": "ci", "stage": "build"}
        sn.commit("done", "active", labels={"stage": "final", "extra": "1"})
        assert sn.stat("done").labels == {"owner": "ci", "stage": "final", "extra": "1"}
        sn.view("look", "done", labels={"purpose": "inspect"})
        assert sn.stat("look").labels == {"purpose": "inspect"}
        sn.prepare("plain")
        assert sn.stat("plain").labels == {}

    def test_walk_lists_all(self, sn: Snapshotter, mnt: Mnt) -> None:
        """``walk`` yields every snapshot with its kind and parent."""
        self.layer(sn, mnt, "base", None)
        self.layer(sn, mnt, "top", "base")
        sn.prepare("active", "top")
        sn.view("look", "base")
        sn.view("empty")
        found = {i.name: (i.kind, i.parent) for i in sn.walk()}
        assert found == {
            "base": (Kind.COMMITTED, None),
            "top": (Kind.COMMITTED, "base"),
            "active": (Kind.ACTIVE, "top"),
            "look": (Kind.VIEW, "base"),
            "empty": (Kind.VIEW, None),
        }
        for info in sn.walk():
            assert info.created_at > 0
            assert info.updated_at >= info.created_at

    def test_usage_counts_written_file(self, sn: Snapshotter, mnt: Mnt) -> None:
        """``usage`` grows by a written file and counts only the snapshot's own layer."""
        self.layer(sn, mnt, "base", None, lambda r: (r / "big0").write_bytes(os.urandom(1 << 20)))
        mounts = sn.prepare("active", "base")
        empty = sn.usage("active")
        assert empty.size < 1 << 20
        with mounted(mounts, mnt()) as root:
            (root / "big").write_bytes(os.urandom(1 << 20))
        used = sn.usage("active")
        assert used.size >= empty.size + (1 << 20)
        assert used.inodes >= empty.inodes + 1
        sn.commit("done", "active")
        assert sn.usage("done") == used
        assert sn.usage("base").size >= 1 << 20

    def test_upperdir_holds_only_own_changes(self, sn: Snapshotter, mnt: Mnt) -> None:
        """``upperdir`` of a child holds what the child changed, nothing of its parent."""
        self.layer(sn, mnt, "base", None, write("a", "1"), write("b", "2"))
        mounts = sn.prepare("work", "base")
        with mounted(mounts, mnt()) as root:
            (root / "c").write_text("3")
            (root / "a").write_text("changed")
        assert expect_files(read_tree(sn.upperdir("work"))) == {"c": "3", "a": "changed"}
        sn.commit("done", "work")
        assert expect_files(read_tree(sn.upperdir("done"))) == {"c": "3", "a": "changed"}

    # -- scale and concurrency ------------------------------------------------------------------

    def test_chain_of_130_layers(self, sn: Snapshotter, mnt: Mnt) -> None:
        """A 130-layer chain shows every layer's file, minus one deleted in layer 60."""
        parent = None
        for i in range(130):
            steps: list[Apply] = [write(f"files/f{i:03}", str(i))]
            if i == 60:
                steps.append(lambda r: (r / "files/f010").unlink())
            self.layer(sn, mnt, f"layer{i:03}", parent, *steps)
            parent = f"layer{i:03}"
        expected = {f"files/f{i:03}": str(i) for i in range(130) if i != 10}
        assert expect_files(self.tree_of(sn, mnt, "layer129")) == expected
        with mounted(sn.prepare("top", "layer129"), mnt()) as root:
            assert expect_files(read_tree(root)) == expected
            (root / "files/f010").write_text("back")
        assert expect_files(read_tree(sn.upperdir("top"))) == {"files/f010": "back"}
        layer59 = self.tree_of(sn, mnt, "layer059")
        assert expect_files(layer59)["files/f010"] == "10"

    def test_concurrent_prepares(self, sn: Snapshotter, mnt: Mnt) -> None:
        """Threads preparing, filling and committing distinct keys all succeed."""
        self.layer(sn, mnt, "base", None, write("base", "b"))

        def build(i: int) -> None:
            with mounted(sn.prepare(f"c{i}-active", "base"), mnt()) as root:
                (root / f"own{i}").write_text(str(i))
            sn.commit(f"c{i}", f"c{i}-active")

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(build, range(16)))
        names = {i.name for i in sn.walk()}
        assert names == {"base"} | {f"c{i}" for i in range(16)}
        for i in (0, 7, 15):
            assert expect_files(self.tree_of(sn, mnt, f"c{i}")) == {"base": "b", f"own{i}": str(i)}

    def test_close_and_reopen(self, tmp_path: Path, mnt: Mnt) -> None:
        """A reopened snapshotter has every snapshot, label and file it had."""
        state = tmp_path / "snapshotter"
        sn = self.make_snapshotter(state)
        try:
            self.layer(sn, mnt, "base", None, write("a", "1"))
            self.layer(sn, mnt, "top", "base", write("b", "2"))
            with mounted(sn.prepare("active", "top", labels={"k": "v"}), mnt()) as root:
                (root / "c").write_text("3")
            sn.view("look", "top")
            before = sorted(sn.walk(), key=lambda i: i.name)
        finally:
            sn.close()
        sn.close()
        again = self.make_snapshotter(state)
        try:
            assert sorted(again.walk(), key=lambda i: i.name) == before
            with mounted(again.mounts("active"), mnt()) as root:
                assert expect_files(read_tree(root)) == {"a": "1", "b": "2", "c": "3"}
            with mounted(again.mounts("look"), mnt()) as root:
                assert expect_files(read_tree(root)) == {"a": "1", "b": "2"}
            again.commit("final", "active")
            assert expect_files(self.tree_of(again, mnt, "final")) == {"a": "1", "b": "2", "c": "3"}
        finally:
            again.close()


_view_ids = itertools.count()
