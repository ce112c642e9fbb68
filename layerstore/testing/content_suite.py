"""The conformance suite every :class:`~layerstore.content.store.ContentStore` runs.

Subclass :class:`ContentStoreSuite` in a test module under a ``Test*`` name and implement
:meth:`ContentStoreSuite.make_store`::

    class TestLocalStore(ContentStoreSuite):
        def make_store(self, tmp_path: Path) -> ContentStore:
            return LocalStore(tmp_path / "content")

Only the protocol is used, so every case holds for any implementation.
"""

from __future__ import annotations

import hashlib
import threading
import tracemalloc
from abc import ABC, abstractmethod
from pathlib import Path

import pytest

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

MIB = 1 << 20
DATA = b"hello, content store\n" * 100


def write_blob(store: ContentStore, ref: str, data: bytes, chunk: int = 4096) -> Digest:
    """Write ``data`` through a writer in ``chunk``-sized pieces and commit it."""
    with store.writer(ref) as writer:
        for start in range(0, len(data), chunk):
            writer.write(data[start : start + chunk])
        return writer.commit(len(data), Digest.from_bytes(data))


def assert_missing(store: ContentStore, digest: Digest) -> None:
    """``info``, ``reader`` and ``delete`` of ``digest`` are ``NotFound`` naming it."""
    with pytest.raises(NotFound, match=digest.hex):
        store.info(digest)
    with pytest.raises(NotFound, match=digest.hex):
        store.reader(digest)
    with pytest.raises(NotFound, match=digest.hex):
        store.delete(digest)


def read_blob(store: ContentStore, digest: Digest, offset: int = 0) -> bytes:
    """Everything from ``offset`` to the end of a committed blob."""
    with store.reader(digest, offset) as f:
        return f.read()


class ContentStoreSuite(ABC):
    """Cases every content store passes; subclasses provide :meth:`make_store`."""

    @abstractmethod
    def make_store(self, tmp_path: Path) -> ContentStore:
        """A fresh, empty store kept under ``tmp_path``."""

    # Writing, committing, reading.

    def test_write_commit_read(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        digest = write_blob(store, "ref-1", DATA)
        assert digest == Digest.from_bytes(DATA)
        assert read_blob(store, digest) == DATA

    def test_read_at_offset(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        digest = write_blob(store, "ref-1", DATA)
        for offset in (0, 1, 17, len(DATA) - 1, len(DATA)):
            assert read_blob(store, digest, offset) == DATA[offset:]

    def test_read_beyond_end_is_invalid(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        digest = write_blob(store, "ref-1", DATA)
        with pytest.raises(InvalidArgument, match=digest.hex):
            store.reader(digest, len(DATA) + 1)

    def test_info_size(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        digest = write_blob(store, "ref-1", DATA)
        info = store.info(digest)
        assert info.digest == digest
        assert info.size == len(DATA)

    def test_exists(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        digest = Digest.from_bytes(DATA)
        assert not store.exists(digest)
        write_blob(store, "ref-1", DATA)
        assert store.exists(digest)

    def test_missing_blob_is_not_found(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        digest = Digest.from_bytes(b"never written")
        assert_missing(store, digest)

    def test_writer_digest_tracks_written_bytes(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        with store.writer("ref-1") as writer:
            assert writer.ref == "ref-1"
            assert writer.digest() == Digest.from_bytes(b"")
            for end in (10, 500, len(DATA)):
                writer.write(DATA[writer.offset : end])
                assert writer.offset == end
                assert writer.digest() == Digest.from_bytes(DATA[:end])

    def test_ingest_is_invisible_until_commit(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        digest = Digest.from_bytes(DATA)
        with store.writer("ref-1") as writer:
            writer.write(DATA)
            assert not store.exists(digest)
            assert list(store.walk()) == []
            writer.commit(expected=digest)
        assert store.exists(digest)

    # Verification at commit.

    def test_commit_wrong_digest_stores_nothing(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        wrong = Digest.from_bytes(b"something else")
        actual = Digest.from_bytes(DATA)
        writer = store.writer("ref-bad")
        writer.write(DATA)
        with pytest.raises(DigestMismatch) as caught:
            writer.commit(len(DATA), wrong)
        assert str(wrong) in str(caught.value)
        assert str(actual) in str(caught.value)
        assert not store.exists(actual)
        assert not store.exists(wrong)
        assert list(store.walk()) == []
        with pytest.raises(NotFound):
            store.status("ref-bad")

    def test_commit_wrong_size_stores_nothing(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        actual = Digest.from_bytes(DATA)
        writer = store.writer("ref-bad")
        writer.write(DATA)
        with pytest.raises(SizeMismatch) as caught:
            writer.commit(len(DATA) + 1, actual)
        assert str(len(DATA) + 1) in str(caught.value)
        assert str(len(DATA)) in str(caught.value)
        assert not store.exists(actual)
        with pytest.raises(NotFound):
            store.status("ref-bad")

    def test_expected_given_at_open_is_verified(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        wrong = Digest.from_bytes(b"something else")
        writer = store.writer("ref-bad", expected=wrong)
        writer.write(DATA)
        with pytest.raises(DigestMismatch, match=wrong.hex):
            writer.commit()
        assert list(store.walk()) == []

    def test_total_given_at_open_is_verified(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        writer = store.writer("ref-bad", total=len(DATA) + 5)
        writer.write(DATA)
        with pytest.raises(SizeMismatch):
            writer.commit()
        assert list(store.walk()) == []

    def test_expected_and_total_given_at_open(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        digest = Digest.from_bytes(DATA)
        writer = store.writer("ref-1", total=len(DATA), expected=digest)
        writer.write(DATA)
        assert writer.commit() == digest
        assert store.info(digest).size == len(DATA)

    def test_commit_of_existing_content(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        first = write_blob(store, "ref-1", DATA)
        second = write_blob(store, "ref-2", DATA)
        assert first == second
        assert read_blob(store, first) == DATA
        assert [info.digest for info in store.walk()] == [first]
        assert store.list_statuses() == []

    def test_two_concurrent_writers_same_digest(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        data = bytes(range(256)) * 4096
        count = 8
        barrier = threading.Barrier(count)
        results: list[Digest] = []
        errors: list[BaseException] = []

        def work(index: int) -> None:
            try:
                with store.writer(f"concurrent-{index}") as writer:
                    barrier.wait()
                    for start in range(0, len(data), 64 * 1024):
                        writer.write(data[start : start + 64 * 1024])
                    results.append(writer.commit(len(data), Digest.from_bytes(data)))
            except BaseException as err:
                errors.append(err)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert results == [Digest.from_bytes(data)] * count
        assert [info.digest for info in store.walk()] == [Digest.from_bytes(data)]
        assert read_blob(store, results[0]) == data
        assert store.list_statuses() == []

    def test_commit_closes_the_writer(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        writer = store.writer("ref-1")
        writer.write(DATA)
        writer.commit()
        with pytest.raises(FailedPrecondition, match="ref-1"):
            writer.write(b"more")
        with pytest.raises(FailedPrecondition, match="ref-1"):
            writer.commit()
        writer.close()
        writer.abort()
        assert store.exists(Digest.from_bytes(DATA))

    # Ingest lifecycle.

    def test_same_ref_twice_is_unavailable(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        with store.writer("ref-twice"), pytest.raises(Unavailable, match="ref-twice"):
            store.writer("ref-twice")
        with store.writer("ref-twice") as writer:
            assert writer.offset == 0

    def test_resume_after_close(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        head, tail = DATA[:700], DATA[700:]
        writer = store.writer("ref-resume")
        writer.write(head)
        writer.close()
        assert store.status("ref-resume").offset == len(head)
        assert not store.exists(Digest.from_bytes(DATA))
        resumed = store.writer("ref-resume")
        assert resumed.offset == len(head)
        assert resumed.digest() == Digest.from_bytes(head)
        resumed.write(tail)
        assert resumed.commit(len(DATA), Digest.from_bytes(DATA)) == Digest.from_bytes(DATA)
        assert read_blob(store, Digest.from_bytes(DATA)) == DATA

    def test_context_manager_exit_keeps_ingest(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        with store.writer("ref-cm") as writer:
            writer.write(DATA[:10])
        with pytest.raises(RuntimeError), store.writer("ref-cm") as writer:
            writer.write(DATA[10:20])
            raise RuntimeError("interrupted")
        with store.writer("ref-cm") as writer:
            assert writer.offset == 20
            assert writer.digest() == Digest.from_bytes(DATA[:20])

    def test_status_progress(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        digest = Digest.from_bytes(DATA)
        with store.writer("ref-status", total=len(DATA), expected=digest) as writer:
            status = store.status("ref-status")
            assert (status.ref, status.offset, status.total, status.expected) == (
                "ref-status",
                0,
                len(DATA),
                digest,
            )
            writer.write(DATA[:100])
            assert store.status("ref-status").offset == 100
            writer.write(DATA[100:])
            later = store.status("ref-status")
            assert later.offset == len(DATA)
            assert later.started_at == status.started_at
            writer.commit()
        with pytest.raises(NotFound, match="ref-status"):
            store.status("ref-status")

    def test_status_of_missing_ingest(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        with pytest.raises(NotFound, match="no-such-ref"):
            store.status("no-such-ref")

    def test_abort(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        with store.writer("ref-abort") as writer:
            writer.write(DATA)
        store.abort("ref-abort")
        with pytest.raises(NotFound):
            store.status("ref-abort")
        with pytest.raises(NotFound, match="ref-abort"):
            store.abort("ref-abort")
        with store.writer("ref-abort") as writer:
            assert writer.offset == 0
        assert list(store.walk()) == []

    def test_writer_abort(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        writer = store.writer("ref-abort")
        writer.write(DATA)
        writer.abort()
        with pytest.raises(NotFound):
            store.status("ref-abort")
        with pytest.raises(FailedPrecondition):
            writer.write(DATA)
        assert list(store.walk()) == []

    def test_list_statuses(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        assert store.list_statuses() == []
        for ref, size in (("ref-a", 3), ("ref-b", 7)):
            with store.writer(ref) as writer:
                writer.write(DATA[:size])
        assert {(s.ref, s.offset) for s in store.list_statuses()} == {("ref-a", 3), ("ref-b", 7)}
        with store.writer("ref-a") as writer:
            writer.commit()
        assert [s.ref for s in store.list_statuses()] == ["ref-b"]

    # Committed blobs.

    def test_walk(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        blobs = [DATA, b"second", b"third" * 1000]
        digests = {write_blob(store, f"ref-{i}", data): len(data) for i, data in enumerate(blobs)}
        with store.writer("pending") as writer:
            writer.write(b"not committed")
        assert {info.digest: info.size for info in store.walk()} == digests

    def test_delete_then_not_found(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        digest = write_blob(store, "ref-1", DATA)
        store.delete(digest)
        assert not store.exists(digest)
        assert_missing(store, digest)
        assert list(store.walk()) == []

    def test_delete_while_reader_open(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        digest = write_blob(store, "ref-1", DATA)
        with store.reader(digest, 5) as f:
            store.delete(digest)
            assert f.read() == DATA[5:]
        assert not store.exists(digest)

    def test_sha512_blob(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        digest = Digest.from_bytes(DATA, "sha512")
        with store.writer("ref-512", expected=digest) as writer:
            writer.write(DATA)
            assert writer.digest() == digest
            assert writer.commit() == digest
        assert store.info(digest).size == len(DATA)
        assert read_blob(store, digest, 3) == DATA[3:]
        assert [info.digest for info in store.walk()] == [digest]
        assert not store.exists(Digest.from_bytes(DATA))

    def test_sha512_expected_only_at_commit(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        digest = Digest.from_bytes(DATA, "sha512")
        with store.writer("ref-512") as writer:
            writer.write(DATA)
            assert writer.commit(expected=digest) == digest
        assert read_blob(store, digest) == DATA

    def test_sha256_and_sha512_of_same_content(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        short = write_blob(store, "ref-256", DATA)
        with store.writer("ref-512") as writer:
            writer.write(DATA)
            long = writer.commit(expected=Digest.from_bytes(DATA, "sha512"))
        assert {info.digest for info in store.walk()} == {short, long}

    def test_empty_blob(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        empty = Digest.from_bytes(b"")
        with store.writer("ref-empty") as writer:
            assert writer.commit(0, empty) == empty
        assert store.info(empty).size == 0
        assert read_blob(store, empty) == b""
        assert read_blob(store, empty, 0) == b""
        with pytest.raises(InvalidArgument):
            store.reader(empty, 1)

    def test_large_blob_streams_without_memory_growth(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        base = bytes(range(256)) * (MIB // 256)
        expected = hashlib.sha256()
        tracemalloc.start()
        try:
            with store.writer("ref-large", total=64 * MIB) as writer:
                for index in range(64):
                    # A new object per chunk, so a store keeping references would show up.
                    chunk = index.to_bytes(8, "big") + base[8:]
                    expected.update(chunk)
                    writer.write(chunk)
                    del chunk
                digest = writer.commit(expected=Digest("sha256", expected.hexdigest()))
            readback = hashlib.sha256()
            with store.reader(digest) as f:
                while block := f.read(MIB):
                    readback.update(block)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert readback.hexdigest() == digest.hex
        assert store.info(digest).size == 64 * MIB
        assert peak < 16 * MIB, f"peak traced memory {peak} bytes while streaming 64 MiB"
