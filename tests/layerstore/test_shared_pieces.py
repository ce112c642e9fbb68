"""The small shared pieces: archive entries of the tar writer, the tree copier, mountinfo."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

from layerstore import treecopy
from layerstore.archive.writer import RECORD_SIZE, TarWriter
from layerstore.mountinfo import parse_line


def test_archive_entries_match_python_tarfile_byte_for_byte() -> None:
    """OCI layout and docker-archive tars were written with tarfile; the writer keeps the
    same bytes so archives of the same images keep their digests."""
    body = os.urandom(3000)
    expected = io.BytesIO()
    with tarfile.open(fileobj=expected, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                           ("blobs/sha256/" + "a" * 64, body)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    got = io.BytesIO()
    writer = TarWriter(got.write)
    writer.add_directory(b"blobs")
    writer.add_directory(b"blobs/sha256")
    writer.add_data(b"oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    writer.add_data(b"blobs/sha256/" + b"a" * 64, io.BytesIO(body), len(body))
    writer.close(record_size=RECORD_SIZE)
    assert got.getvalue() == expected.getvalue()


def test_tree_copy_keeps_what_cp_a_keeps(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d/f").write_bytes(b"data")
    os.chown(src / "d/f", 1234, 5678)
    os.chmod(src / "d/f", 0o4750)
    os.link(src / "d/f", src / "hard")
    os.symlink("/etc/passwd", src / "abs-link")
    os.mkfifo(src / "fifo")
    os.setxattr(src / "d/f", "user.note", b"kept")
    os.utime(src / "d", ns=(1_000_000_000, 2_000_000_000))
    dest = tmp_path / "dest"
    treecopy.copy_tree(src, dest, contents=True)
    st = os.lstat(dest / "d/f")
    assert (dest / "d/f").read_bytes() == b"data"
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o4750)
    assert os.getxattr(dest / "d/f", "user.note") == b"kept"
    assert os.lstat(dest / "hard").st_ino == st.st_ino
    assert os.readlink(dest / "abs-link") == "/etc/passwd"
    assert stat.S_ISFIFO(os.lstat(dest / "fifo").st_mode)
    assert os.lstat(dest / "d").st_mtime_ns == 2_000_000_000


def test_tree_copy_skip_rule_and_links(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "keep").mkdir(parents=True)
    (src / "keep/a").write_text("a")
    (src / "keep/b.log").write_text("b")
    dest = tmp_path / "dest"
    treecopy.copy_tree(src, dest, link=True, skip=lambda rel, is_dir: rel.endswith(".log"))
    assert (dest / "keep/a").read_text() == "a"
    assert not (dest / "keep/b.log").exists()
    assert os.lstat(dest / "keep/a").st_ino == os.lstat(src / "keep/a").st_ino


def test_mountinfo_line_with_escapes_and_superblock_options() -> None:
    line = ("36 35 0:52 / /mnt/with\\040space rw,relatime shared:1 - overlay overlay "
            "rw,lowerdir=/l,upperdir=/var/lib/x\\040y/fs,workdir=/w\n")
    mi = parse_line(line)
    assert (mi.mount_id, mi.parent_id, mi.device) == (36, 35, "0:52")
    assert mi.mount_point == "/mnt/with space"
    assert mi.fstype == "overlay"
    assert mi.super_option("upperdir") == "/var/lib/x y/fs"
    assert mi.super_option("missing") is None
