"""write_upper / write_diff / apply_layer against real overlayfs mounts and real trees."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pytest
from isal import igzip

from layerstore.archive.whiteout import opaque_xattr
from layerstore.content.local import LocalStore
from layerstore.diff import apply_layer, apply_stream, write_diff, write_tree, write_upper
from layerstore.digest import Digest
from layerstore.errors import DigestMismatch, FailedPrecondition, SizeMismatch
from layerstore.oci import Descriptor
from tests.layerstore.test_archive import EMPTY_LAYER_DIFF_ID, make_tree, manifest


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@contextmanager
def overlay(lower: Path, upper: Path, tmp: Path, *options: str):
    """Mount lower+upper at a fresh directory and yield it; always unmounts."""
    work = tmp / f"work-{upper.name}"
    merged = tmp / f"merged-{upper.name}"
    upper.mkdir(exist_ok=True)
    work.mkdir()
    merged.mkdir()
    opts = ",".join((f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}", *options))
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True)
    try:
        yield merged
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def copy_tree(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    return dst


def change(root: Path) -> None:
    """The same edits, made in an overlay's merged view or in a plain copy."""
    (root / "new").mkdir()
    (root / "new" / "file").write_bytes(b"new file\n")
    (root / "a2").write_bytes(b"added\n")
    with open(root / "dir" / "b", "ab") as f:
        f.write(b"appended\n")
    (root / "a.txt").unlink()
    subprocess.run(["rm", "-rf", str(root / "deep")], check=True)
    subprocess.run(["rm", "-rf", str(root / "dir" / "sub")], check=True)
    (root / "dir" / "sub").mkdir()
    (root / "dir" / "sub" / "newc").write_bytes(b"recreated\n")
    subprocess.run(["mv", str(root / "big"), str(root / "big2")], check=True)
    (root / "a").chmod(0o600)
    os.chown(root / "a0", 1234, 5678)
    os.link(root / "hl" / "one", root / "hl" / "four")
    os.setxattr(root / "empty", "user.new", b"xattr added")
    (root / "links" / "dangling").unlink()
    (root / "links" / "to-dir").unlink()
    (root / "links" / "to-dir").mkdir()
    (root / "old").unlink()
    (root / "old").mkdir()
    (root / "old" / "inside").write_bytes(b"file became a dir\n")
    (root / "emptydir").rmdir()
    (root / "emptydir").write_bytes(b"dir became a file\n")
    (root / "dev" / "null").unlink()
    (root / "private").chmod(0o750)
    os.removexattr(root / "bin" / "ping", "security.capability")


def tar_names(store: LocalStore, descriptor: Descriptor) -> list[str]:
    with store.reader(descriptor.digest) as f:
        data = igzip.decompress(f.read())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


def test_overlay_upper_applies_to_the_merged_view(tmp_path: Path, store: LocalStore) -> None:
    lower = tmp_path / "lower"
    make_tree(lower)
    upper = tmp_path / "upper"
    with overlay(lower, upper, tmp_path) as merged:
        change(merged)
        expected = manifest(merged)
    assert stat.S_ISCHR(os.lstat(upper / "a.txt").st_mode)
    layer = write_upper(upper, store)
    names = tar_names(store, layer.descriptor)
    for name in (".wh.a.txt", ".wh.deep", ".wh.big", "dir/sub/.wh..wh..opq",
                 "links/.wh.dangling", "dev/.wh.null"):
        assert name in names
    assert names.index("dir/sub") + 1 == names.index("dir/sub/.wh..wh..opq")

    applied = copy_tree(lower, tmp_path / "applied")
    assert apply_layer(store, layer.descriptor, applied) == layer.diff_id
    assert manifest(applied) == expected

    fresh_upper = tmp_path / "upper2"
    fresh_upper.mkdir()
    assert apply_layer(store, layer.descriptor, fresh_upper, overlay=True) == layer.diff_id
    assert os.getxattr(fresh_upper / "dir" / "sub", opaque_xattr()) == b"y"
    st = os.lstat(fresh_upper / "deep")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    with overlay(lower, fresh_upper, tmp_path) as merged2:
        assert manifest(merged2) == expected
    assert write_upper(fresh_upper, store) == layer


def test_write_upper_is_reproducible(tmp_path: Path, store: LocalStore) -> None:
    lower = tmp_path / "lower"
    make_tree(lower)
    upper = tmp_path / "upper"
    with overlay(lower, upper, tmp_path) as merged:
        change(merged)
    first = write_upper(upper, store, "zstd", source_date_epoch=1_600_000_005)
    copy = copy_tree(upper, tmp_path / "upper-copy")
    assert write_upper(copy, store, "zstd", source_date_epoch=1_600_000_005) == first
    assert write_upper(upper, store, "zstd") != first


def test_write_upper_refuses_redirects(tmp_path: Path, store: LocalStore) -> None:
    lower = tmp_path / "lower"
    (lower / "olddir").mkdir(parents=True)
    (lower / "olddir" / "f").write_bytes(b"f")
    upper = tmp_path / "upper"
    with overlay(lower, upper, tmp_path, "redirect_dir=on") as merged:
        os.rename(merged / "olddir", merged / "newdir")
    with pytest.raises(FailedPrecondition, match="redirect"):
        write_upper(upper, store)
    assert store.list_statuses() == []


def test_write_diff_of_two_trees(tmp_path: Path, store: LocalStore) -> None:
    lower = tmp_path / "lower"
    make_tree(lower)
    upper = copy_tree(lower, tmp_path / "upper")
    change(upper)
    layer = write_diff(lower, upper, store)
    names = tar_names(store, layer.descriptor)
    assert ".wh.a.txt" in names and ".wh.deep" in names and "dir/sub/newc" in names
    assert "bin/su" not in names and "dir/b" in names and "dir" in names
    assert "hl/two" in names, "every name of a changed inode is linked again"
    applied = copy_tree(lower, tmp_path / "applied")
    assert apply_layer(store, layer.descriptor, applied) == layer.diff_id
    assert manifest(applied) == manifest(upper)
    assert write_diff(lower, upper, store) == layer


def test_write_diff_of_identical_trees_is_empty(tmp_path: Path, store: LocalStore) -> None:
    lower = tmp_path / "lower"
    make_tree(lower)
    same = copy_tree(lower, tmp_path / "same")
    layer = write_diff(lower, same, store, "none")
    assert str(layer.diff_id) == EMPTY_LAYER_DIFF_ID


def test_write_diff_includes_parents_and_content_changes(tmp_path: Path,
                                                         store: LocalStore) -> None:
    lower = tmp_path / "lower"
    (lower / "p" / "q").mkdir(parents=True)
    (lower / "p" / "q" / "f").write_bytes(b"aaaa")
    (lower / "x").write_bytes(b"x")
    os.utime(lower / "p" / "q" / "f", (1000, 1000))
    upper = copy_tree(lower, tmp_path / "upper")
    (upper / "p" / "q" / "f").write_bytes(b"bbbb")
    os.utime(upper / "p" / "q" / "f", (1000, 1000))
    for d in (upper / "p" / "q", upper / "p"):
        st = os.lstat(lower / d.relative_to(upper))
        os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.link(upper / "x", upper / "y")
    layer = write_diff(lower, upper, store)
    names = tar_names(store, layer.descriptor)
    assert names[:3] == ["p", "p/q", "p/q/f"], "same size and mtime: compared by content"
    assert set(names) == {"p", "p/q", "p/q/f", "x", "y"}
    applied = copy_tree(lower, tmp_path / "applied")
    apply_layer(store, layer.descriptor, applied)
    assert manifest(applied) == manifest(upper)


def test_apply_layer_rejects_wrong_digest(tmp_path: Path, store: LocalStore) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(os.urandom(50_000))
    good = write_tree(src, store)
    (src / "other").write_bytes(b"other")
    other = write_tree(src, store)
    blob_path = store.path(good.descriptor.digest)
    blob_path.chmod(0o644)
    blob_path.write_bytes(store.path(other.descriptor.digest).read_bytes())
    out = tmp_path / "out1"
    out.mkdir()
    with pytest.raises(DigestMismatch, match=str(good.descriptor.digest)):
        apply_layer(store, good.descriptor, out)

    data = bytearray(store.path(other.descriptor.digest).read_bytes())
    data[len(data) // 2] ^= 0x55
    blob_path.write_bytes(bytes(data))
    out = tmp_path / "out2"
    out.mkdir()
    with pytest.raises(DigestMismatch, match="hashes to"):
        apply_layer(store, good.descriptor, out)

    wrong_size = Descriptor(other.descriptor.media_type, other.descriptor.digest,
                            other.descriptor.size + 1)
    out = tmp_path / "out3"
    out.mkdir()
    with pytest.raises(SizeMismatch):
        apply_layer(store, wrong_size, out)


def _tar(*entries: tuple) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, *rest in entries:
            info = tarfile.TarInfo(name)
            info.mtime = rest[1] if len(rest) > 1 else 1_500_000_000
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.LNKTYPE, rest[0]
                tar.addfile(info)
            else:
                data = rest[0] if rest else b"data"
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _apply(root: Path, *entries: tuple, overlay: bool = False) -> None:
    apply_stream(io.BytesIO(_tar(*entries)), root, overlay=overlay)


def _seed(root: Path, build: Callable[[Path], None]) -> Path:
    root.mkdir()
    build(root)
    return root


def test_whiteouts_delete(tmp_path: Path) -> None:
    def build(r: Path) -> None:
        (r / "d" / "sub").mkdir(parents=True)
        (r / "d" / "sub" / "f").write_bytes(b"f")
        (r / "file").write_bytes(b"x")
        (r / "keep").write_bytes(b"k")
    root = _seed(tmp_path / "root", build)
    _apply(root, ("file", ".wh.d"), ("file", ".wh.file"), ("file", ".wh.missing"),
           ("file", "nodir/.wh.x"))
    assert sorted(os.listdir(root)) == ["keep"]


def test_opaque_keeps_what_the_layer_wrote(tmp_path: Path) -> None:
    def build(r: Path) -> None:
        (r / "d" / "old" / "deeper").mkdir(parents=True)
        (r / "d" / "old" / "deeper" / "f").write_bytes(b"f")
        (r / "d" / "kept").mkdir()
        (r / "d" / "kept" / "lower-child").write_bytes(b"lower")
        (r / "d" / "gone").write_bytes(b"g")
    root = _seed(tmp_path / "root", build)
    _apply(root, ("dir", "d"), ("dir", "d/kept"), ("file", "d/kept/new", b"new"),
           ("file", "d/.wh..wh..opq"), ("file", "d/late", b"late"))
    assert sorted(os.listdir(root / "d")) == ["kept", "late"]
    assert os.listdir(root / "d" / "kept") == ["new"]


def test_overlay_form_whiteouts(tmp_path: Path) -> None:
    root = _seed(tmp_path / "upper", lambda r: None)
    _apply(root, ("dir", "d"), ("file", "d/.wh..wh..opq"), ("file", "d/x"),
           ("file", "e/.wh.gone"), overlay=True)
    assert os.getxattr(root / "d", opaque_xattr()) == b"y"
    st = os.lstat(root / "e" / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 and stat.S_IMODE(st.st_mode) == 0
    assert not os.path.lexists(root / "d" / ".wh..wh..opq")


def test_replacing_objects_of_another_type(tmp_path: Path) -> None:
    def build(r: Path) -> None:
        (r / "was-dir" / "child").mkdir(parents=True)
        (r / "was-file").write_bytes(b"f")
        (r / "merge").mkdir()
        (r / "merge" / "lower").write_bytes(b"l")
        (r / "target").mkdir()
        os.symlink("target", r / "was-link")
        (r / "shared").write_bytes(b"shared")
        os.link(r / "shared", r / "shared-link")
    root = _seed(tmp_path / "root", build)
    _apply(root, ("file", "was-dir", b"now a file"), ("dir", "was-file"),
           ("file", "was-file/in", b"in"), ("dir", "merge"), ("file", "merge/upper"),
           ("dir", "was-link"), ("file", "shared", b"rewritten"))
    assert (root / "was-dir").read_bytes() == b"now a file"
    assert (root / "was-file" / "in").read_bytes() == b"in"
    assert sorted(os.listdir(root / "merge")) == ["lower", "upper"]
    assert (root / "was-link").is_dir() and not (root / "was-link").is_symlink()
    assert os.listdir(root / "target") == []
    assert (root / "shared-link").read_bytes() == b"shared"


def test_directory_mtime_and_root_entry(tmp_path: Path) -> None:
    root = _seed(tmp_path / "root", lambda r: None)
    data = _tar(("dir", "./", None, 1_000), ("dir", "d", None, 2_000), ("file", "d/f"),
                ("link", "d/g", "d/f"))
    apply_stream(io.BytesIO(data), root)
    assert os.lstat(root / "d").st_mtime == 2_000
    assert os.lstat(root).st_mtime == 1_000
    assert os.lstat(root / "d" / "g").st_ino == os.lstat(root / "d" / "f").st_ino


def test_apply_stream_returns_diff_id_of_compressed_input(tmp_path: Path) -> None:
    data = _tar(("file", "f", b"payload"))
    root = _seed(tmp_path / "root", lambda r: None)
    assert apply_stream(io.BytesIO(igzip.compress(data)), root) == Digest.from_bytes(data)
    assert (root / "f").read_bytes() == b"payload"
