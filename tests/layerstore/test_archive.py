"""Layer tars: round trips of every file type, the exact format, reproducibility, and the
reader against tars written by GNU tar and Python's tarfile."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import stat
import subprocess
import tarfile
from collections import defaultdict
from pathlib import Path

import pytest
import zstandard
from isal import igzip

from layerstore.archive.reader import Applier, TarReader
from layerstore.archive.writer import walk
from layerstore.content.local import LocalStore
from layerstore.diff import Layer, apply_layer, apply_stream, write_tree
from layerstore.digest import Digest
from layerstore.errors import InvalidArgument
from layerstore.oci import MediaType

EMPTY_LAYER_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
# A version 2 file capability blob: cap_net_raw+ep.
CAPABILITY = bytes.fromhex("0100000200200000000000000000000000000000")


def manifest(root: Path) -> dict:
    """What a layer must preserve: path → (type, mode, uid, gid, size, sha256, link target,
    device, xattrs, mtime for non-directories), plus the groups of hardlinked names."""
    entries: dict[bytes, tuple] = {}
    inodes: dict[tuple[int, int], list[bytes]] = defaultdict(list)
    base = os.fsencode(root)
    for top, dirs, files in os.walk(base):
        for name in dirs + files:
            path = os.path.join(top, name)
            rel = os.path.relpath(path, base)
            st = os.lstat(path)
            fmt = stat.S_IFMT(st.st_mode)
            if fmt == stat.S_IFSOCK:
                continue
            xattrs = tuple(sorted(
                (key, os.getxattr(path, key, follow_symlinks=False))
                for key in os.listxattr(path, follow_symlinks=False)
                if not key.startswith("trusted.overlay.")
            ))
            entries[rel] = (
                fmt, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                st.st_size if fmt == stat.S_IFREG else 0,
                hashlib.sha256(Path(os.fsdecode(path)).read_bytes()).hexdigest()
                if fmt == stat.S_IFREG else "",
                os.readlink(path) if fmt == stat.S_IFLNK else b"",
                st.st_rdev if fmt in (stat.S_IFCHR, stat.S_IFBLK) else 0,
                xattrs,
                None if fmt == stat.S_IFDIR else st.st_mtime_ns // 1_000_000_000,
            )
            if fmt != stat.S_IFDIR and st.st_nlink > 1:
                inodes[(st.st_dev, st.st_ino)].append(rel)
    links = sorted(sorted(names) for names in inodes.values() if len(names) > 1)
    return {"entries": entries, "links": links}


def make_tree(root: Path) -> None:
    """A tree with every file type and most corner cases a layer has to carry."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "a": b"a\n", "a.txt": b"dot\n", "a-b": b"dash\n", "a0": b"zero\n",
        "dir/b": b"b\n", "dir/sub/c": b"c\n", "empty": b"", "block512": b"x" * 512,
        "big/random.bin": os.urandom(3 * 1024 * 1024 + 123), "big/mib": b"m" * (1 << 20),
        "L" * 255: b"long component\n",
        "deep/" + "x" * 90 + "/" + "y" * 90 + "/" + "z" * 90 + "/file": b"long path\n",
        "ünïcødé.txt": b"unicode\n", "bin/ping": b"\x7fELF fake\n", "bin/su": b"su\n",
        "hl/one": b"linked\n", "old": b"old\n", "negative": b"before 1970\n",
        "future": b"far future\n", "ids/big": b"big ids\n", "ids/zero-mode": b"mode 0\n",
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    raw = os.path.join(os.fsencode(root), b"raw-\xff\xfe")
    with open(raw, "wb") as f:
        f.write(b"not utf-8 name\n")
    (root / "a" ).chmod(0o640)
    os.link(root / "hl/one", root / "hl/two")
    os.link(root / "hl/one", root / "hl/three")
    (root / "links").mkdir()
    os.symlink("/etc/passwd", root / "links/absolute")
    os.symlink("../dir/b", root / "links/relative")
    os.symlink("does/not/exist", root / "links/dangling")
    os.symlink("../dir", root / "links/to-dir")
    os.link(root / "links/relative", root / "links/relative-hardlink", follow_symlinks=False)
    (root / "emptydir").mkdir()
    (root / "private").mkdir(mode=0o700)
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    (root / "setgid").mkdir()
    (root / "setgid").chmod(0o2775)
    (root / "dev").mkdir()
    os.mknod(root / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(root / "dev/loop0", stat.S_IFBLK | 0o660, os.makedev(7, 0))
    os.mkfifo(root / "dev/fifo", 0o600)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "dev/socket"))
    sock.close()
    (root / "bin/su").chmod(0o4755)
    os.chown(root / "bin/su", 0, 0)
    os.setxattr(root / "bin/ping", "security.capability", CAPABILITY)
    os.setxattr(root / "a.txt", "user.comment", b"hello")
    os.setxattr(root / "a.txt", "user.binary", bytes(range(256)))
    os.setxattr(root / "dir", "user.dir", b"on a dir")
    os.setxattr(root / "links/absolute", "trusted.onlink", b"on a symlink",
                follow_symlinks=False)
    os.chown(root / "dir/b", 1000, 1001)
    os.chown(root / "ids/big", 3_000_000, 4_000_000_000)
    os.chown(root / "links/relative", 5, 6, follow_symlinks=False)
    (root / "ids/zero-mode").chmod(0)
    os.utime(root / "old", ns=(0, 0))
    os.utime(root / "negative", ns=(0, -31_536_000_000_000_000))
    os.utime(root / "future", ns=(0, (2**33 + 5) * 1_000_000_000))
    stamp = 1_600_000_000
    for i, (_name, path, st) in enumerate(sorted(walk(os.fsencode(root)), reverse=True)):
        if stat.S_ISSOCK(st.st_mode) or path.endswith((b"/old", b"/negative", b"/future")):
            continue
        os.utime(path, ns=(stamp, (stamp + i) * 1_000_000_000 + 123_456_789),
                 follow_symlinks=False)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree") / "rootfs"
    make_tree(root)
    return root


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _blob(store: LocalStore, layer: Layer) -> bytes:
    with store.reader(layer.descriptor.digest) as f:
        return f.read()


def _tar_bytes(store: LocalStore, layer: Layer) -> bytes:
    blob = _blob(store, layer)
    if blob[:2] == b"\x1f\x8b":
        return igzip.decompress(blob)
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob)).read()
    return blob


def _raw_headers(data: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """``(name field, typeflag, whole block)`` of every header block, PAX ones included."""
    out = []
    offset = 0
    while offset < len(data):
        block = data[offset : offset + 512]
        if block == bytes(512):
            break
        size = int(block[124:136].rstrip(b"\x00 ") or b"0", 8)
        typeflag = block[156:157]
        out.append((block[:100].rstrip(b"\x00"), typeflag, block))
        body = size if typeflag in (b"0", b"x") else 0
        offset += 512 + (body + 511) // 512 * 512
    return out


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_round_trip_every_file_type(tree: Path, store: LocalStore, tmp_path: Path,
                                    compression: str) -> None:
    layer = write_tree(tree, store, compression)
    out = tmp_path / "out"
    out.mkdir()
    assert apply_layer(store, layer.descriptor, out) == layer.diff_id
    assert manifest(out) == manifest(tree)


def test_media_types(tree: Path, store: LocalStore) -> None:
    assert write_tree(tree, store).descriptor.media_type == MediaType.OCI_LAYER_GZIP
    assert write_tree(tree, store, "zstd").descriptor.media_type == MediaType.OCI_LAYER_ZSTD
    assert write_tree(tree, store, "none").descriptor.media_type == MediaType.OCI_LAYER
    docker = write_tree(tree, store, docker_media_type=True)
    assert docker.descriptor.media_type == MediaType.DOCKER_LAYER_GZIP
    with pytest.raises(InvalidArgument):
        write_tree(tree, store, "none", docker_media_type=True)
    with pytest.raises(InvalidArgument):
        write_tree(tree, store, "lz4")


def test_digests_and_sizes(tree: Path, store: LocalStore) -> None:
    for compression in ("gzip", "zstd", "none"):
        layer = write_tree(tree, store, compression)
        blob = _blob(store, layer)
        assert layer.descriptor.digest == Digest.from_bytes(blob)
        assert layer.descriptor.size == len(blob)
        data = _tar_bytes(store, layer)
        assert layer.diff_id == Digest.from_bytes(data)
        assert layer.uncompressed_size == len(data)


def test_same_tree_same_bytes(tree: Path, store: LocalStore, tmp_path: Path) -> None:
    first = {c: write_tree(tree, store, c) for c in ("gzip", "zstd", "none")}
    copy = tmp_path / "elsewhere" / "copy"
    copy.parent.mkdir()
    subprocess.run(["cp", "-a", str(tree), str(copy)], check=True)
    for top, _dirs, files in os.walk(copy):
        for name in files:
            path = os.path.join(top, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                st = os.lstat(path)
                os.utime(path, ns=(st.st_atime_ns + 10**12, st.st_mtime_ns))
    for compression, layer in first.items():
        assert write_tree(tree, store, compression) == layer
        assert write_tree(copy, store, compression) == layer


def test_source_date_epoch_clamps_mtimes(tree: Path, store: LocalStore) -> None:
    epoch = 1_600_000_010
    layer = write_tree(tree, store, "none", source_date_epoch=epoch)
    assert layer != write_tree(tree, store, "none")
    with tarfile.open(fileobj=io.BytesIO(_tar_bytes(store, layer))) as tar:
        mtimes = {m.name: m.mtime for m in tar.getmembers()}
    assert mtimes["old"] == 0
    assert mtimes["negative"] == -31_536_000
    assert mtimes["future"] == epoch
    assert max(mtimes.values()) == epoch
    assert sorted(set(mtimes.values()))[-2] < epoch


def test_format_conventions(tree: Path, store: LocalStore) -> None:
    data = _tar_bytes(store, write_tree(tree, store, "none"))
    assert data.endswith(bytes(1024)) and len(data) % 512 == 0
    headers = _raw_headers(data)
    for name, typeflag, block in headers:
        assert block[257:265] == b"ustar\x0000"
        assert block[265:329] == bytes(64), "uname/gname must be empty"
        if typeflag == b"x":
            continue
        assert not name.startswith((b"./", b"/"))
        if len(name) < 100:
            assert (typeflag == b"5") == name.endswith(b"/")
        assert int(block[100:108].rstrip(b"\x00"), 8) <= 0o7777, "no file-type bits in mode"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    order = [os.fsencode(m.name) for m in members]
    assert order == [name for name, _p, st in walk(os.fsencode(tree))
                     if not stat.S_ISSOCK(st.st_mode)]
    assert order.index(b"a") < order.index(b"a-b") < order.index(b"a.txt") < order.index(b"a0")
    assert order.index(b"dir") < order.index(b"dir/b") < order.index(b"dir/sub")
    byname = {m.name: m for m in members}
    assert byname["hl/one"].isreg() and byname["hl/one"].size == 7
    assert byname["hl/three"].islnk() and byname["hl/three"].linkname == "hl/one"
    assert byname["hl/two"].linkname == "hl/one"
    assert byname["links/relative-hardlink"].linkname == "links/relative"
    assert byname["bin/ping"].pax_headers["SCHILY.xattr.security.capability"].encode(
        "utf-8", "surrogateescape") == CAPABILITY
    assert byname["ids/big"].uid == 3_000_000 and byname["ids/big"].gid == 4_000_000_000
    assert byname["dev/null"].ischr() and (byname["dev/null"].devmajor,
                                          byname["dev/null"].devminor) == (1, 3)
    assert "dev/socket" not in byname
    for member in members:
        assert not {"atime", "ctime"} & set(member.pax_headers)
        assert member.uname == "" and member.gname == ""
    plain = [m for m in members if not m.pax_headers]
    assert plain, "most entries need no PAX header"


def test_empty_tree_is_the_empty_layer(tmp_path: Path, store: LocalStore) -> None:
    (tmp_path / "empty").mkdir()
    layer = write_tree(tmp_path / "empty", store, "none")
    assert str(layer.diff_id) == EMPTY_LAYER_DIFF_ID
    assert layer.uncompressed_size == 1024
    out = tmp_path / "out"
    out.mkdir()
    assert str(apply_layer(store, layer.descriptor, out)) == EMPTY_LAYER_DIFF_ID
    assert os.listdir(out) == []


def test_gnu_tar_and_zstd_read_our_layers(tree: Path, store: LocalStore,
                                          tmp_path: Path) -> None:
    gz = write_tree(tree, store, "gzip")
    listing = subprocess.run(["tar", "-tzvf", str(store.path(gz.descriptor.digest))],
                             check=True, capture_output=True, text=True,
                             errors="replace").stdout
    assert "hl/three link to hl/one" in listing
    assert "links/absolute -> /etc/passwd" in listing
    zs = write_tree(tree, store, "zstd")
    result = subprocess.run(
        f"zstd -dc {store.path(zs.descriptor.digest)} | tar -tf -", shell=True, check=True,
        capture_output=True)
    assert b"dir/sub/c\n" in result.stdout
    out = tmp_path / "gnu"
    out.mkdir()
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpzf",
                    str(store.path(gz.descriptor.digest)), "-C", str(out)], check=True)
    assert manifest(out) == manifest(tree)


@pytest.mark.parametrize("fmt", ["gnu", "posix", "ustar-dot"])
def test_reader_reads_gnu_tar(tree: Path, tmp_path: Path, fmt: str) -> None:
    archive = tmp_path / "gnu.tar"
    args = ["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-cf", str(archive),
            "-C", str(tree)]
    if fmt == "ustar-dot":
        args[1:1] = ["--format=posix"]
        args.append(".")
    else:
        args[1:1] = [f"--format={fmt}"]
        args += sorted(os.listdir(tree))
    subprocess.run(args, check=True, capture_output=True)
    out = tmp_path / "out"
    out.mkdir()
    with open(archive, "rb") as f:
        diff_id = apply_stream(f, out)
    assert diff_id == Digest.from_bytes(archive.read_bytes())
    assert manifest(out) == manifest(tree)


def test_reader_reads_python_tarfile(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"payload")
    os.symlink("d/f", src / "s")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(src, arcname=".")
    out = tmp_path / "out"
    out.mkdir()
    assert apply_stream(io.BytesIO(buf.getvalue()), out) == Digest.from_bytes(buf.getvalue())
    assert manifest(out) == manifest(src)


def test_reader_hashes_trailing_data(tmp_path: Path) -> None:
    data = _simple_tar([("f", b"x")]) + bytes(10240)
    reader = TarReader(io.BytesIO(data))
    assert [e.name for e in reader] == ["f"]
    assert reader.finish() == Digest.from_bytes(data)


def _simple_tar(files: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_corrupt_compressed_stream(tmp_path: Path) -> None:
    blob = igzip.compress(_simple_tar([("f", os.urandom(100_000))]))
    with pytest.raises(InvalidArgument, match="corrupt layer tar"):
        apply_stream(io.BytesIO(blob[: len(blob) // 2]), tmp_path)
    broken = bytearray(blob)
    broken[len(blob) // 2] ^= 0xFF
    with pytest.raises(InvalidArgument):
        apply_stream(io.BytesIO(bytes(broken)), tmp_path)


def test_write_tree_errors(tmp_path: Path, store: LocalStore) -> None:
    from layerstore.errors import NotFound

    with pytest.raises(NotFound):
        write_tree(tmp_path / "missing", store)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidArgument, match="not a directory"):
        write_tree(tmp_path / "file", store)
    assert store.list_statuses() == []


def test_large_tree_streams(tmp_path: Path, store: LocalStore) -> None:
    src = tmp_path / "many"
    for i in range(300):
        sub = src / f"d{i % 17:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:04d}").write_bytes(os.urandom(i * 37))
    layer = write_tree(src, store, "zstd")
    out = tmp_path / "out"
    out.mkdir()
    apply_layer(store, layer.descriptor, out)
    assert manifest(out) == manifest(src)
    shutil.rmtree(out)


def test_plain_archive_mode_keeps_whiteout_names_and_overrides_owner(tmp_path: Path) -> None:
    """Without whiteout conversion ``.wh.`` names are ordinary files; ``owner`` replaces the
    archive's owners; the root entry leaves the root alone."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        root = tarfile.TarInfo("./")
        root.type, root.mode = tarfile.DIRTYPE, 0o700
        tar.addfile(root)
        for name in ("a/.wh.gone", "a/.wh..wh..opq"):
            info = tarfile.TarInfo(name)
            info.size, info.uid, info.gid = 1, 1234, 5678
            tar.addfile(info, io.BytesIO(b"x"))
    dest = tmp_path / "dest"
    dest.mkdir(mode=0o755)
    reader = TarReader(io.BytesIO(buf.getvalue()))
    Applier(str(dest), whiteouts=False, owner=(42, 43)).apply(reader)
    assert (dest / "a/.wh.gone").read_bytes() == b"x"
    assert (dest / "a/.wh..wh..opq").is_file()
    st = (dest / "a/.wh.gone").stat()
    assert (st.st_uid, st.st_gid) == (42, 43)
    assert dest.stat().st_mode & 0o777 == 0o755
    assert (dest / "a").stat().st_uid == 0
