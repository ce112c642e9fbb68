"""The content-store conformance suite on LocalStore, plus its own layout, process-level
concurrency and crash-safety tests."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import layerstore
from layerstore.content import LocalStore
from layerstore.content.copy import put_bytes, write_stream
from layerstore.content.store import ContentStore
from layerstore.digest import Digest
from layerstore.errors import (
    DigestMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SizeMismatch,
    Unavailable,
)
from layerstore.testing.content_suite import ContentStoreSuite

pytestmark = pytest.mark.unit

REPO = Path(layerstore.__file__).resolve().parent.parent
CHILD_CHUNK = 64 * 1024


def pattern(size: int) -> bytes:
    """Deterministic content whose bytes depend on their offset (period 251)."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


class TestLocalStore(ContentStoreSuite):
    """The conformance suite."""

    def make_store(self, tmp_path: Path) -> ContentStore:
        return LocalStore(tmp_path / "content")


# Layout and conveniences.


def test_blob_layout(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    short = put_bytes(store, b"abc")
    long = put_bytes(store, b"abc", Digest.from_bytes(b"abc", "sha512"))
    assert (tmp_path / "blobs" / "sha256" / short.hex).read_bytes() == b"abc"
    assert (tmp_path / "blobs" / "sha512" / long.hex).read_bytes() == b"abc"
    assert store.path(short) == tmp_path / "blobs" / "sha256" / short.hex


def test_ingest_layout(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    expected = Digest.from_bytes(b"hello")
    with store.writer("my ref", total=5, expected=expected) as writer:
        writer.write(b"hel")
        directory = tmp_path / "ingest" / hashlib.sha256(b"my ref").hexdigest()
        assert sorted(os.listdir(directory)) == ["data", "lock", "meta.json"]
        assert (directory / "data").read_bytes() == b"hel"
        meta = json.loads((directory / "meta.json").read_bytes())
        assert meta["ref"] == "my ref"
        assert meta["total"] == 5
        assert meta["expected"] == str(expected)
        assert isinstance(meta["started_at"], float)
        assert blob_files(tmp_path) == []
        writer.write(b"lo")
        writer.commit()
    assert os.listdir(tmp_path / "ingest") == []


def test_path_of_missing_blob(tmp_path: Path) -> None:
    digest = Digest.from_bytes(b"absent")
    with pytest.raises(NotFound, match=digest.hex):
        LocalStore(tmp_path).path(digest)


class ChunkRecorder(io.BytesIO):
    """A stream remembering the largest read it was asked for."""

    largest = 0

    def read(self, size: int | None = -1, /) -> bytes:
        self.largest = max(self.largest, -1 if size is None else size)
        return super().read(size)


def test_ingest_stream(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    data = pattern(3 * (1 << 20) + 17)
    stream = ChunkRecorder(data)
    digest = write_stream(store, stream, expected=Digest.from_bytes(data), size=len(data))
    assert digest == Digest.from_bytes(data)
    assert store.info(digest).size == len(data)
    assert 0 < stream.largest <= 1 << 20
    assert store.path(digest).read_bytes() == data
    assert store.list_statuses() == []


def test_ingest_mismatch_stores_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    wrong = Digest.from_bytes(b"other")
    with pytest.raises(DigestMismatch, match=wrong.hex):
        write_stream(store, io.BytesIO(b"data"), expected=wrong)
    with pytest.raises(SizeMismatch):
        write_stream(store, io.BytesIO(b"data"), size=5)
    assert list(store.walk()) == []
    assert store.list_statuses() == []


class FailingStream(io.BytesIO):
    """A stream that breaks after its first read."""

    def read(self, size: int | None = -1, /) -> bytes:
        if self.tell():
            raise OSError("connection reset")
        return super().read(4)


def test_ingest_failure_keeps_named_ingest_only(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(OSError, match="connection reset"):
        write_stream(store, FailingStream(b"abcdefgh"))
    assert store.list_statuses() == []
    with pytest.raises(OSError, match="connection reset"):
        write_stream(store, FailingStream(b"abcdefgh"), ref="upload-1")
    assert store.status("upload-1").offset == 4
    resumed = write_stream(store, io.BytesIO(b"efgh"), ref="upload-1")
    assert resumed == Digest.from_bytes(b"abcdefgh")


def test_put_bytes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    digest = put_bytes(store, b'{"schemaVersion": 2}')
    assert digest == Digest.from_bytes(b'{"schemaVersion": 2}')
    assert put_bytes(store, b'{"schemaVersion": 2}', digest) == digest
    wrong = Digest.from_bytes(b"x")
    with pytest.raises(DigestMismatch, match=wrong.hex):
        put_bytes(store, b"y", wrong)
    assert [info.digest for info in store.walk()] == [digest]
    assert store.list_statuses() == []


# Bad input gets typed errors.


def test_non_digest_arguments(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    text: Any = str(Digest.from_bytes(b""))
    for call in (store.info, store.exists, store.reader, store.delete, store.path):
        with pytest.raises(InvalidArgument, match="Digest"):
            call(text)
    with pytest.raises(InvalidArgument):
        store.writer("ref", expected=text)
    with pytest.raises(InvalidArgument):
        put_bytes(store, b"", text)


def test_bad_refs_sizes_and_offsets(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    none: Any = None
    text: Any = "5"
    for ref in ("", none, "\udcff"):
        with pytest.raises(InvalidArgument):
            store.writer(ref)
    with pytest.raises(InvalidArgument, match="total"):
        store.writer("ref", total=-1)
    with pytest.raises(InvalidArgument, match="total"):
        store.writer("ref", total=text)
    digest = put_bytes(store, b"abc")
    with pytest.raises(InvalidArgument, match="offset"):
        store.reader(digest, -1)
    with store.writer("ref") as writer:
        with pytest.raises(InvalidArgument, match="ref"):
            writer.write(text)
        with pytest.raises(InvalidArgument):
            writer.commit(size=-3)
        writer.write(b"still usable")


def test_root_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(InvalidArgument, match="file"):
        LocalStore(tmp_path / "file")


def test_resume_with_conflicting_declarations(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.writer("ref", total=10).close()
    with pytest.raises(FailedPrecondition, match="total 10"):
        store.writer("ref", total=11)
    with store.writer("ref", expected=Digest.from_bytes(b"a")):
        pass
    with pytest.raises(FailedPrecondition, match="ref"):
        store.writer("ref", expected=Digest.from_bytes(b"b"))
    status = store.status("ref")
    assert (status.total, status.expected) == (10, Digest.from_bytes(b"a"))


def test_walk_skips_foreign_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    digest = put_bytes(store, b"abc")
    (tmp_path / "blobs" / "sha256" / "README").write_text("not a blob")
    assert [info.digest for info in store.walk()] == [digest]


# Ingest ownership and resumption.


def test_resume_in_a_new_store_rehashes_disk(tmp_path: Path) -> None:
    with LocalStore(tmp_path).writer("ref") as writer:
        writer.write(b"abc")
    directory = tmp_path / "ingest" / hashlib.sha256(b"ref").hexdigest()
    with open(directory / "data", "ab") as f:
        f.write(b"def")
    with LocalStore(tmp_path).writer("ref") as writer:
        assert writer.offset == 6
        assert writer.digest() == Digest.from_bytes(b"abcdef")
        writer.write(b"g")
        assert writer.commit(7) == Digest.from_bytes(b"abcdefg")


def test_abort_of_a_held_ingest_is_unavailable(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with store.writer("held") as writer:
        writer.write(b"x")
        with pytest.raises(Unavailable, match="held"):
            store.abort("held")
    store.abort("held")
    assert store.list_statuses() == []


def test_writer_abort_after_close(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    writer = store.writer("ref")
    writer.write(b"x")
    writer.close()
    writer.abort()
    assert store.list_statuses() == []


# Other processes.


def _commit_from_process(root: str, index: int, size: int, barrier: Any, queue: Any) -> None:
    """Child of test_concurrent_processes_same_digest."""
    try:
        data = pattern(size)
        with LocalStore(root).writer(f"process-{index}") as writer:
            barrier.wait(timeout=120)
            for start in range(0, size, CHILD_CHUNK):
                writer.write(data[start : start + CHILD_CHUNK])
            queue.put(str(writer.commit(size, Digest.from_bytes(data))))
    except Exception as err:
        queue.put(f"error: {err!r}")


def test_concurrent_processes_same_digest(tmp_path: Path) -> None:
    size, count = 4 << 20, 4
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(count)
    queue = context.Queue()
    processes = [
        context.Process(target=_commit_from_process, args=(str(tmp_path), i, size, barrier, queue))
        for i in range(count)
    ]
    for process in processes:
        process.start()
    results = [queue.get(timeout=300) for _ in processes]
    for process in processes:
        process.join()
    digest = Digest.from_bytes(pattern(size))
    assert results == [str(digest)] * count
    assert [info.digest for info in LocalStore(tmp_path).walk()] == [digest]
    assert LocalStore(tmp_path).list_statuses() == []
    assert_blobs_intact(tmp_path)


CHILD = """
import sys, time
from layerstore.content import local
from layerstore.digest import Digest

root, ref, size, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
data = (bytes(range(251)) * (size // 251 + 1))[:size]


def hang(word):
    def hook(*args):
        print(word, flush=True)
        time.sleep(600)
    return hook


if mode == "before-publish":
    local._publish = hang("publishing")
elif mode == "after-publish":
    local._remove_ingest = hang("removing")
with local.LocalStore(root).writer(ref, total=size, expected=Digest.from_bytes(data)) as w:
    print("offset", w.offset, flush=True)
    if mode == "hold":
        hang("holding")()
    while w.offset < size:
        w.write(data[w.offset : w.offset + 65536])
        print("wrote", w.offset, flush=True)
    print("committing", flush=True)
    print("committed", w.commit(), flush=True)
"""


def spawn(root: Path, ref: str, size: int, mode: str) -> subprocess.Popen[str]:
    """Start a child writing ``pattern(size)`` into ingest ``ref``."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), ref, str(size), mode],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for(proc: subprocess.Popen[str], word: str, at_least: int = 0) -> str:
    """Read the child's lines until one is ``word`` (followed by a number >= ``at_least``)."""
    assert proc.stdout is not None
    while line := proc.stdout.readline():
        head, *rest = line.split()
        if head == word and (not at_least or int(rest[0]) >= at_least):
            return line
    raise AssertionError(f"child exited ({proc.wait()}) before printing {word!r}")


def kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the child and reap it."""
    proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def blob_files(root: Path) -> list[Path]:
    """Every file under ``blobs/``."""
    return sorted(p for p in (root / "blobs").rglob("*") if not p.is_dir())


def assert_blobs_intact(root: Path) -> None:
    """Every file under ``blobs/`` is ``<alg>/<hex>`` and hashes to its name."""
    for path in blob_files(root):
        algorithm = path.parent.name
        assert path.parent.parent == root / "blobs", path
        with open(path, "rb") as f:
            assert Digest.from_stream(f, algorithm) == Digest(algorithm, path.name), path


def assert_resumable(store: LocalStore, ref: str, data: bytes) -> int:
    """The ingest ``ref`` holds a prefix of ``data``; return its length."""
    try:
        offset = store.status(ref).offset
    except NotFound:
        return 0
    with store.writer(ref) as writer:
        assert writer.offset == offset
        assert writer.digest() == Digest.from_bytes(data[:offset])
    return offset


def test_sigkill_at_random_points(tmp_path: Path) -> None:
    size = 4 << 20
    data = pattern(size)
    digest = Digest.from_bytes(data)
    store = LocalStore(tmp_path)
    rng = random.Random(20240601)
    offset = 0
    for _ in range(20):
        proc = spawn(tmp_path, "crash", size, "run")
        assert int(wait_for(proc, "offset").split()[1]) == offset
        # Kill a little past a random target: while writing, or (target at the end) committing.
        target = min(offset + rng.randrange(size // 8), size)
        if target == size:
            wait_for(proc, "committing")
        else:
            wait_for(proc, "wrote", target)
        time.sleep(rng.uniform(0, 0.0005))
        kill(proc)
        assert_blobs_intact(tmp_path)
        if store.exists(digest):
            break
        offset = assert_resumable(store, "crash", data)
    with spawn(tmp_path, "crash", size, "run") as proc:
        wait_for(proc, "committed")
    assert proc.returncode == 0
    assert [info.digest for info in store.walk()] == [digest]
    assert_blobs_intact(tmp_path)
    assert store.list_statuses() == []


def test_sigkill_between_fsync_and_rename(tmp_path: Path) -> None:
    size = 1 << 20
    data = pattern(size)
    store = LocalStore(tmp_path)
    proc = spawn(tmp_path, "crash", size, "before-publish")
    wait_for(proc, "publishing")
    kill(proc)
    assert blob_files(tmp_path) == []
    assert assert_resumable(store, "crash", data) == size
    with store.writer("crash") as writer:
        assert writer.commit() == Digest.from_bytes(data)
    assert_blobs_intact(tmp_path)
    assert store.list_statuses() == []


def test_sigkill_after_rename(tmp_path: Path) -> None:
    size = 1 << 20
    data = pattern(size)
    store = LocalStore(tmp_path)
    proc = spawn(tmp_path, "crash", size, "after-publish")
    wait_for(proc, "removing")
    kill(proc)
    assert_blobs_intact(tmp_path)
    assert store.exists(Digest.from_bytes(data))
    assert assert_resumable(store, "crash", data) == 0
    with store.writer("crash") as writer:
        writer.write(data)
        assert writer.commit() == Digest.from_bytes(data)
    assert_blobs_intact(tmp_path)
    assert store.list_statuses() == []


def test_lock_across_processes_and_release_on_kill(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    proc = spawn(tmp_path, "shared", 10, "hold")
    wait_for(proc, "holding")
    with pytest.raises(Unavailable, match="shared"):
        store.writer("shared")
    with pytest.raises(Unavailable, match="shared"):
        store.abort("shared")
    kill(proc)
    with store.writer("shared") as writer:
        writer.write(pattern(10))
        writer.commit()
    assert store.exists(Digest.from_bytes(pattern(10)))
