"""Hostile layer tars: each is rejected with a clear error or contained inside the root.

Every case extracts into ``tmp/root`` next to ``tmp/outside`` (sentinel files) and
``tmp/sibling``; afterwards everything outside the root, ``/``, ``/etc`` and
``/etc/passwd`` must be exactly as before.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
from pathlib import Path

import pytest

from layerstore.content.local import LocalStore
from layerstore.diff import apply_layer, apply_stream
from layerstore.digest import Digest
from layerstore.errors import LayerstoreError
from layerstore.oci import Descriptor, MediaType
from tests.layerstore import hostile

CASE_NAMES = [case.name for case in hostile.cases(Path("/nonexistent/outside"))]


def _snapshot(base: Path, exclude: Path) -> dict[str, tuple]:
    """Every object below ``base`` except ``exclude``: type, mode, size, mtime, content."""
    out: dict[str, tuple] = {}
    for top, dirs, files in os.walk(base):
        if Path(top) == exclude:
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if Path(top, d) != exclude]
        for name in dirs + files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                digest = os.readlink(path)
            else:
                digest = ""
            out[path] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_uid, digest)
    return out


def _host_state() -> tuple:
    passwd = Path("/etc/passwd")
    return (sorted(os.listdir("/")), sorted(os.listdir("/etc")),
            os.lstat(passwd).st_mtime_ns, hashlib.sha256(passwd.read_bytes()).hexdigest())


@pytest.fixture
def arena(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "sentinel").write_text("sentinel\n")
    (outside / "sub" / "file").write_text("sub\n")
    (tmp_path / "sibling").mkdir()
    (tmp_path / "sibling" / "keep").write_text("keep\n")
    (tmp_path / "root").mkdir()
    yield tmp_path
    subprocess.run(["rm", "-rf", str(tmp_path / "root")], check=True)


def _run_case(arena: Path, name: str, overlay: bool, extract) -> None:
    root = arena / "root"
    case = {c.name: c for c in hostile.cases(arena / "outside")}[name]
    if case.before is not None:
        case.before(root)
    before, host = _snapshot(arena, root), _host_state()
    if case.expect == hostile.REJECT:
        with pytest.raises(LayerstoreError) as info:
            extract(case.data, root, overlay)
        assert type(info.value).__name__ in case.errors, info.value
        assert case.match in str(info.value)
    else:
        extract(case.data, root, overlay)
        if case.check is not None:
            case.check(root, overlay)
    assert _snapshot(arena, root) == before
    assert _host_state() == host


def _from_stream(data: bytes, root: Path, overlay: bool) -> None:
    apply_stream(io.BytesIO(data), root, overlay=overlay)


@pytest.mark.parametrize("overlay", [False, True], ids=["plain", "overlay"])
@pytest.mark.parametrize("name", CASE_NAMES)
def test_hostile_case(arena: Path, name: str, overlay: bool) -> None:
    _run_case(arena, name, overlay, _from_stream)


@pytest.mark.parametrize("name", ["symlink-abs-outside-then-write", "symlink-loop",
                                  "hardlink-dotdot", "truncated", "whiteout-dotdot"])
def test_hostile_case_through_store(arena: Path, tmp_path_factory, name: str) -> None:
    store = LocalStore(tmp_path_factory.mktemp("store"))

    def extract(data: bytes, root: Path, overlay: bool) -> None:
        blob = gzip.compress(data, mtime=0)
        digest = Digest.from_bytes(blob)
        with store.writer(f"hostile-{name}") as writer:
            writer.write(blob)
            writer.commit(len(blob), digest)
        apply_layer(store, Descriptor(MediaType.OCI_LAYER_GZIP, digest, len(blob)), root,
                    overlay=overlay)

    _run_case(arena, name, False, extract)


def test_error_names_the_entry(arena: Path) -> None:
    data = hostile.build(("dir", "ok"), ("file", "ok/../../etc/shadow"))
    with pytest.raises(LayerstoreError, match=r"ok/\.\./\.\./etc/shadow"):
        apply_stream(io.BytesIO(data), arena / "root")


def test_symlink_out_then_dir_of_same_name_stays_inside(arena: Path) -> None:
    outside = arena / "outside"
    data = hostile.build(("symlink", "x", str(outside)), ("dir", "x"), ("file", "x/evil"))
    apply_stream(io.BytesIO(data), arena / "root")
    assert (arena / "root" / "x").is_dir() and not (arena / "root" / "x").is_symlink()
    assert not (outside / "evil").exists()
