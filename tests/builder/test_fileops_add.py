"""ADD: local tar archives are unpacked, URLs downloaded (from a local HTTP server)."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import stat
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from builder.errors import DockerfileError
from builder.fileops import CopySpec, copy_into
from builder.fileops.download import url_filename
from builder.fileops.unpack import is_archive

MTIME = 1_200_000_000


def make_tar(entries: list[tuple[str, str, bytes | str]], *,
             owner: tuple[int, int] = (42, 43)) -> bytes:
    """A tar with ``(name, kind, data)`` entries; kind is file, dir, symlink or hardlink."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in entries:
            member = tarfile.TarInfo(name)
            member.uid, member.gid = owner
            member.mtime = MTIME
            if kind == "file":
                payload = data.encode() if isinstance(data, str) else data
                member.size = len(payload)
                member.mode = 0o640
                tar.addfile(member, io.BytesIO(payload))
                continue
            if kind == "dir":
                member.type, member.mode = tarfile.DIRTYPE, 0o750
            elif kind == "symlink":
                member.type, member.linkname = tarfile.SYMTYPE, str(data)
            else:
                member.type, member.linkname = tarfile.LNKTYPE, str(data)
            tar.addfile(member)
    return buffer.getvalue()


def compress(data: bytes, kind: str) -> bytes:
    if kind == "none":
        return data
    if kind == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    import bz2
    import gzip
    import lzma
    return {"gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress}[kind](data)


class Env:
    def __init__(self, base: Path) -> None:
        self.ctx = base / "ctx"
        self.rootfs = base / "rootfs"
        self.scratch = base / "scratch"
        for d in (self.ctx, self.rootfs, self.scratch):
            d.mkdir()
        (self.rootfs / "etc").mkdir()
        (self.rootfs / "etc/passwd").write_text("app:x:1000:1001::/home/app:/bin/sh\n")

    def add(self, *sources: str, dest: str, **options: object) -> None:
        options.setdefault("add", True)
        options.setdefault("instruction", "ADD")
        spec = CopySpec(sources=sources, dest=dest, line=4, **options)  # type: ignore[arg-type]
        copy_into(spec, self.ctx, self.rootfs, scratch=self.scratch)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


ARCHIVE = [("./", "dir", ""), ("top", "dir", ""), ("top/a.txt", "file", "alpha"),
           ("top/link", "symlink", "a.txt"), ("top/hard", "hardlink", "top/a.txt"),
           ("b.txt", "file", "beta")]


@pytest.mark.parametrize("kind", ["none", "gzip", "bzip2", "xz", "zstd"])
def test_local_archives_are_unpacked(env: Env, kind: str) -> None:
    (env.ctx / "arch.bin").write_bytes(compress(make_tar(ARCHIVE), kind))
    assert is_archive(env.ctx / "arch.bin")
    env.add("arch.bin", dest="/t17")
    t17 = env.rootfs / "t17"
    assert (t17 / "top/a.txt").read_text() == "alpha"
    assert (t17 / "b.txt").read_text() == "beta"
    assert os.readlink(t17 / "top/link") == "a.txt"
    assert os.stat(t17 / "top/hard").st_ino == os.stat(t17 / "top/a.txt").st_ino
    st = os.stat(t17 / "top/a.txt")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 42, 43)
    assert st.st_mtime == MTIME
    assert stat.S_IMODE(os.stat(t17 / "top").st_mode) == 0o750
    assert os.stat(t17 / "top").st_mtime == MTIME
    # the archive's "./" entry does not change the destination made for it
    dest = os.stat(t17)
    assert (stat.S_IMODE(dest.st_mode), dest.st_uid) == (0o755, 0)


def test_archive_into_existing_directory_merges(env: Env) -> None:
    (env.rootfs / "srv/top").mkdir(parents=True)
    (env.rootfs / "srv/keep").write_text("k")
    (env.rootfs / "srv/b.txt").mkdir()
    (env.ctx / "a.tar").write_bytes(make_tar(ARCHIVE))
    env.add("a.tar", dest="/srv/")
    assert (env.rootfs / "srv/keep").read_text() == "k"
    assert (env.rootfs / "srv/top/a.txt").read_text() == "alpha"
    assert (env.rootfs / "srv/b.txt").read_text() == "beta"  # replaced the directory


def test_chown_applies_to_unpacked_entries_chmod_does_not(env: Env) -> None:
    (env.ctx / "a.tar").write_bytes(make_tar(ARCHIVE))
    env.add("a.tar", dest="/t17c", chown="app", chmod="700")
    t17c = env.rootfs / "t17c"
    st = os.stat(t17c / "top/a.txt")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 1000, 1001)
    assert (os.stat(t17c).st_uid, os.stat(t17c).st_gid) == (1000, 1001)


def test_copy_does_not_unpack_and_non_archives_are_copied(env: Env) -> None:
    (env.ctx / "a.tar.gz").write_bytes(compress(make_tar(ARCHIVE), "gzip"))
    (env.ctx / "fake.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    (env.ctx / "empty.tar").write_bytes(b"")
    spec = CopySpec(sources=("a.tar.gz",), dest="/copied")
    copy_into(spec, env.ctx, env.rootfs, scratch=env.scratch)
    env.add("fake.tar.gz", "empty.tar", dest="/added/")
    assert (env.rootfs / "copied").read_bytes() == (env.ctx / "a.tar.gz").read_bytes()
    assert (env.rootfs / "added/fake.tar.gz").read_bytes() == b"\x1f\x8b not really gzip"
    assert (env.rootfs / "added/empty.tar").read_bytes() == b""


def test_archive_entries_cannot_escape(env: Env, tmp_path: Path) -> None:
    (env.ctx / "evil.tar").write_bytes(make_tar([("../../escaped", "file", "x")]))
    with pytest.raises(DockerfileError, match="outside the extraction root") as caught:
        env.add("evil.tar", dest="/x")
    assert str(caught.value).startswith("Dockerfile:4: ADD failed: archive evil.tar")
    assert not (tmp_path / "escaped").exists()


def test_archive_symlinks_resolve_inside_destination(env: Env, tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    entries = [("abs", "symlink", os.fspath(tmp_path / "outside")), ("abs/f1", "file", "1"),
               ("rel", "symlink", "../../../../../.."), ("rel/f2", "file", "2"),
               ("up", "symlink", "/"), ("up/etc/f3", "file", "3")]
    (env.ctx / "links.tar").write_bytes(make_tar(entries))
    env.add("links.tar", dest="/x")
    assert os.listdir(tmp_path / "outside") == []
    x = env.rootfs / "x"
    assert (x / os.fspath(tmp_path / "outside").lstrip("/") / "f1").read_text() == "1"
    assert (x / "f2").read_text() == "2"
    assert (x / "etc/f3").read_text() == "3"
    assert "f3" not in os.listdir(env.rootfs / "etc")


def test_whiteout_names_are_plain_files(env: Env) -> None:
    (env.rootfs / "w").mkdir()
    (env.rootfs / "w/victim").write_text("v")
    (env.ctx / "wh.tar").write_bytes(make_tar([(".wh.victim", "file", "")]))
    env.add("wh.tar", dest="/w")
    assert (env.rootfs / "w/victim").exists()
    assert (env.rootfs / "w/.wh.victim").exists()


# -- URLs --------------------------------------------------------------------------------

ROUTES: dict[str, tuple[int, bytes, dict[str, str]]] = {
    "/files/app.bin": (200, b"payload", {"Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"}),
    "/files/arch.tar": (200, make_tar(ARCHIVE), {}),
    "/": (200, b"index", {}),
    "/moved": (302, b"", {"Location": "/files/app.bin"}),
}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body, headers = ROUTES.get(self.path.split("?")[0], (404, b"nope", {}))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_url_download(env: Env, server: str) -> None:
    env.add(f"{server}/files/app.bin", dest="/dl/")
    env.add(f"{server}/files/app.bin", dest="/named")
    for path in ("dl/app.bin", "named"):
        st = os.stat(env.rootfs / path)
        assert (env.rootfs / path).read_bytes() == b"payload"
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 0, 0)
        assert st.st_mtime == 1445412480
    assert os.listdir(env.scratch) == []


def test_url_download_follows_redirects_and_takes_chown_chmod(env: Env, server: str) -> None:
    env.add(f"{server}/moved", dest="/r/", chown="app", chmod="644")
    st = os.stat(env.rootfs / "r/moved")
    assert (env.rootfs / "r/moved").read_bytes() == b"payload"
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o644, 1000, 1001)


def test_url_archives_are_not_unpacked(env: Env, server: str) -> None:
    env.add(f"{server}/files/arch.tar", dest="/a/")
    assert (env.rootfs / "a/arch.tar").read_bytes() == ROUTES["/files/arch.tar"][1]


def test_url_checksum(env: Env, server: str) -> None:
    good = "sha256:" + hashlib.sha256(b"payload").hexdigest()
    env.add(f"{server}/files/app.bin", dest="/ok", checksum=good)
    assert (env.rootfs / "ok").read_bytes() == b"payload"
    bad = "sha256:" + "0" * 64
    with pytest.raises(DockerfileError) as caught:
        env.add(f"{server}/files/app.bin", dest="/bad", checksum=bad)
    message = str(caught.value)
    assert message.startswith(f"Dockerfile:4: ADD failed: checksum mismatch for {server}/")
    assert f"expected {bad}, got {good}" in message
    assert not (env.rootfs / "bad").exists()
    assert os.listdir(env.scratch) == []


def test_url_http_error(env: Env, server: str) -> None:
    with pytest.raises(DockerfileError) as caught:
        env.add(f"{server}/missing.txt", dest="/x")
    assert f"downloading {server}/missing.txt: HTTP 404 Not Found" in str(caught.value)
    assert os.listdir(env.scratch) == []


def test_url_connection_error(env: Env) -> None:
    with pytest.raises(DockerfileError, match=r"downloading http://127\.0\.0\.1:9/x"):
        env.add("http://127.0.0.1:9/x", dest="/x")


def test_url_and_checksum_rules(env: Env, server: str) -> None:
    with pytest.raises(DockerfileError, match="source can't be a URL for COPY"):
        env.add(f"{server}/files/app.bin", dest="/x", add=False, instruction="COPY")
    with pytest.raises(DockerfileError, match="checksum can't be specified for COPY"):
        env.add("f", dest="/x", add=False, checksum="sha256:" + "0" * 64)
    with pytest.raises(DockerfileError, match="checksum requires HTTP"):
        env.add("f", dest="/x", checksum="sha256:" + "0" * 64)
    with pytest.raises(DockerfileError, match="invalid checksum 'md5:00'"):
        env.add(f"{server}/files/app.bin", dest="/x", checksum="md5:00")
    with pytest.raises(DockerfileError, match="Git sources are not supported"):
        env.add("https://github.com/moby/buildkit.git", dest="/x")


@pytest.mark.parametrize(("url", "name"), [
    ("http://h/a/b/file.tgz", "file.tgz"), ("http://h/a/dir/", "dir"),
    ("http://h/", "__unnamed__"), ("http://h", "__unnamed__"),
    ("http://h/x%20y?q=1#frag", "x y"),
])
def test_url_filename(url: str, name: str) -> None:
    assert url_filename(url) == name
