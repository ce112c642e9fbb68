"""The conformance suite every :class:`~registry.storage.driver.StorageDriver` runs (the
counterpart of distribution's ``storagedriver/testsuites``).

Subclass :class:`StorageDriverSuite` in a test module under a ``Test*`` name and implement
:meth:`StorageDriverSuite.make_driver`; it must return a driver over an empty namespace, and
a *new* driver over the same namespace when called again with the same ``tmp_path`` (the
resume cases use that to stand for another server process)::

    class TestFilesystemDriver(StorageDriverSuite):
        def make_driver(self, tmp_path: Path) -> StorageDriver:
            return FilesystemDriver(tmp_path / "storage")

Every test runs under a SIGALRM timeout (:attr:`StorageDriverSuite.timeout` seconds).
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from registry.storage.driver import StorageDriver
from registry.storage.errors import InvalidOffset, InvalidPath, PathNotFound
from registry.testing.deadline import time_limit

MIB = 1024 * 1024


def payload(size: int, seed: int = 0) -> bytes:
    """``size`` reproducible bytes that are not a repeating short pattern."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest() * 64
        counter += 1
    return bytes(out[:size])


def read_all(driver: StorageDriver, path: str, offset: int = 0) -> bytes:
    """The content at ``path`` from ``offset`` through a reader."""
    reader = driver.reader(path, offset)
    try:
        parts = []
        while chunk := reader.read(MIB):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        reader.close()


class StorageDriverSuite(ABC):
    """The cases; see the module docstring."""

    timeout = 120

    @abstractmethod
    def make_driver(self, tmp_path: Path) -> StorageDriver:
        """A driver over this test's (initially empty) namespace."""

    @pytest.fixture(autouse=True)
    def _deadline(self) -> Iterator[None]:
        with time_limit(self.timeout, "storage driver test"):
            yield

    # Whole objects.

    def test_put_and_get_content(self, tmp_path: Path) -> None:
        d = self.make_driver(tmp_path)
        d.put_content("a/b/c", b"hello")
        assert d.get_content("a/b/c") == b"hello"
        d.put_content("a/b/c", b"replaced")
        assert d.get_content("a/b/c") == b"replaced"
        d.put_content("a/empty", b"")
        assert d.get_content("a/empty") == b""
        assert self.make_driver(tmp_path).get_content("a/b/c") == b"replaced"

    def test_missing_paths(self, tmp_path: Path) -> None:
        d = self.make_driver(tmp_path)
        d.put_content("x/y", b"1")
        for call in (lambda: d.get_content("nope"), lambda: d.reader("nope"),
                     lambda: d.stat("x/nope"), lambda: d.list("nope"),
                     lambda: d.move("nope", "x/z"), lambda: d.delete("nope"),
                     lambda: d.get_content("x")):
            with pytest.raises(PathNotFound):
                call()

    @pytest.mark.parametrize("path", ["", "/abs", "a//b", "a/../b", "..", "a/./b", "trail/",
                                      "sp ace", "a\nb", "ü"])
    def test_invalid_paths(self, tmp_path: Path, path: str) -> None:
        d = self.make_driver(tmp_path)
        with pytest.raises(InvalidPath):
            d.put_content(path, b"x")
        with pytest.raises(InvalidPath):
            d.get_content(path)

    # Reading.

    def test_reader_offsets(self, tmp_path: Path) -> None:
        d = self.make_driver(tmp_path)
        data = payload(3 * MIB + 17)
        d.put_content("blob", data)
        assert read_all(d, "blob") == data
        assert read_all(d, "blob", 1) == data[1:]
        assert read_all(d, "blob", 2 * MIB + 5) == data[2 * MIB + 5:]
        assert read_all(d, "blob", len(data)) == b""
        with pytest.raises(InvalidOffset):
            d.reader("blob", len(data) + 1)
        reader = d.reader("blob", 10)
        assert reader.read(5) == data[10:15]
        reader.close()

    # Writing.

    def test_writer_commit(self, tmp_path: Path) -> None:
        d = self.make_driver(tmp_path)
        w = d.writer("up/small")
        assert w.size == 0
        w.write(b"abc")
        w.write(b"def")
        assert w.size == 6
        w.commit()
        assert d.get_content("up/small") == b"abcdef"
        assert d.stat("up/small").size == 6

    def test_writer_empty_commit(self, tmp_path: Path) -> None:
        d = self.make_driver(tmp_path)
        w = d.writer("up/empty")
        w.commit()
        assert d.get_content("up/empty") == b""

    def test_writer_large_in_pieces(self, tmp_path: Path) -> None:
        d = self.make_driver(tmp_path)
        data = payload(12 * MIB + 3, seed=1)
        w = d.writer("up/large")
        for i in range(0, len(data), 700_000):
            w.write(data[i:i + 700_000])
        assert w.size == len(data)
        w.commit()
        assert d.stat("up/large").size == len(data)
        assert hashlib.sha256(read_all(d, "up/large")).digest() == hashlib.sha256(data).digest()

    @pytest.mark.parametrize("sizes", [
        (10, 20, 30),
        (4 * MIB, 2 * MIB, 1),
        (6 * MIB, 1 * MIB, 5 * MIB, 3 * MIB),
        (0, 1, 0),
    ], ids=["tiny", "crossing-a-part", "many-parts", "empty-pieces"])
    def test_writer_resumes_from_state_in_another_driver(self, tmp_path: Path,
                                                         sizes: tuple[int, ...]) -> None:
        data = payload(sum(sizes), seed=2)
        pos = 0
        state = None
        for i, size in enumerate(sizes):
            d = self.make_driver(tmp_path)
            w = d.writer("up/resumed", append=i > 0, state=state)
            assert w.size == pos
            w.write(data[pos:pos + size])
            pos += size
            assert w.size == pos
            w.close()
            state = dict(w.state())
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in state.items())
        d = self.make_driver(tmp_path)
        w = d.writer("up/resumed", append=True, state=state)
        assert w.size == len(data)
        w.commit()
        assert read_all(d, "up/resumed") == data

    def test_writer_cancel_leaves_nothing(self, tmp_path: Path) -> None:
        d = self.make_driver(tmp_path)
        w = d.writer("up/cancelled")
        w.write(payload(6 * MIB))
        w.close()
        w = d.writer("up/cancelled", append=True, state=w.state())
        w.write(b"more")
        w.cancel()
        with pytest.raises(PathNotFound):
            d.stat("up/cancelled")
        with pytest.raises(PathNotFound):
            d.list("up")
        assert [info.path for info in d.walk("")] == []

    def test_resume_without_content_is_not_found(self, tmp_path: Path) -> None:
        d = self.make_driver(tmp_path)
        with pytest.raises(PathNotFound):
            d.writer("up/never", append=True, state={})

    def test_writers_in_parallel(self, tmp_path: Path) -> None:
        d = self.make_driver(tmp_path)
        blobs = {f"par/{i}": payload(MIB + i, seed=i) for i in range(6)}

        def write(path: str) -> None:
            w = d.writer(path)
            w.write(blobs[path])
            w.commit()

        with ThreadPoolExecutor(6) as pool:
            list(pool.map(write, blobs))
        for path, data in blobs.items():
            assert d.get_content(path) == data

    # Listing and metadata.

    def test_stat(self, tmp_path: Path) -> None:
        d = self.make_driver(tmp_path)
        d.put_content("dir/sub/file", b"12345")
        info = d.stat("dir/sub/file")
        assert (info.path, info.size, info.is_dir) == ("dir/sub/file", 5, False)
        assert info.modified > 0
        assert d.stat("dir").is_dir
        assert d.stat("dir/sub").is_dir

    def test_list(self, tmp_path: Path) -> None:
        d = self.make_driver(tmp_path)
        for path in ("top/b", "top/a/x", "top/a/y", "top/c/d/e", "other"):
            d.put_content(path, b"-")
        assert d.list("top") == ["top/a", "top/b", "top/c"]
        assert d.list("top/a") == ["top/a/x", "top/a/y"]
        assert d.list("") == ["other", "top"]
        with pytest.raises(PathNotFound):
            d.list("top/b/none")

    def test_walk(self, tmp_path: Path) -> None:
        d = self.make_driver(tmp_path)
        for path, size in (("w/a", 1), ("w/b/c", 2), ("w/b/d/e", 3), ("x", 4)):
            d.put_content(path, b"z" * size)
        found = {(i.path, i.size) for i in d.walk("w")}
        assert found == {("w/a", 1), ("w/b/c", 2), ("w/b/d/e", 3)}
        assert {i.path for i in d.walk("")} == {"w/a", "w/b/c", "w/b/d/e", "x"}

    # Moving and deleting.

    def test_move(self, tmp_path: Path) -> None:
        d = self.make_driver(tmp_path)
        data = payload(7 * MIB, seed=3)
        w = d.writer("uploads/u1/data")
        w.write(data)
        w.commit()
        d.move("uploads/u1/data", "blobs/sha256/ab/final")
        assert read_all(d, "blobs/sha256/ab/final") == data
        with pytest.raises(PathNotFound):
            d.stat("uploads/u1/data")
        d.put_content("src2", b"new")
        d.move("src2", "blobs/sha256/ab/final")
        assert d.get_content("blobs/sha256/ab/final") == b"new"

    def test_delete(self, tmp_path: Path) -> None:
        d = self.make_driver(tmp_path)
        for path in ("del/a", "del/b/c", "del/b/d", "keep/e"):
            d.put_content(path, b"1")
        d.delete("del/a")
        with pytest.raises(PathNotFound):
            d.get_content("del/a")
        d.delete("del")
        with pytest.raises(PathNotFound):
            d.stat("del")
        with pytest.raises(PathNotFound):
            d.delete("del")
        assert d.get_content("keep/e") == b"1"
        assert d.list("") == ["keep"]

    def test_redirect_url_serves_the_content_when_given(self, tmp_path: Path) -> None:
        d = self.make_driver(tmp_path)
        data = payload(100_000, seed=4)
        d.put_content("r/blob", data)
        url = d.redirect_url("r/blob")
        if url is None:
            return
        response = httpx.get(url, timeout=30)
        assert response.status_code == 200
        assert response.content == data
        ranged = httpx.get(url, headers={"Range": "bytes=10-19"}, timeout=30)
        assert ranged.status_code == 206 and ranged.content == data[10:20]


def unique_prefix(tmp_path: Path) -> str:
    """A key prefix for one test's namespace in a shared bucket."""
    return "t-" + hashlib.sha256(os.fsencode(tmp_path)).hexdigest()[:16]
