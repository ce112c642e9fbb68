"""The conformance suite every :class:`~registry.metadata.store.MetadataStore` runs.

Subclass :class:`MetadataStoreSuite` in a test module under a ``Test*`` name and implement
:meth:`MetadataStoreSuite.make_store`::

    class TestSqliteMetadataStore(MetadataStoreSuite):
        def make_store(self, tmp_path: Path) -> MetadataStore:
            return SqliteMetadataStore(tmp_path / "metadata.db")

``make_store`` must open the *same* store when called again with the same ``tmp_path``, also
from another process: the reopen, concurrency and crash cases rely on it (child processes
import the subclass by its module and name, so it must live at module level). Only the
protocol is used, so every case holds for any implementation.
"""

from __future__ import annotations

import functools
import importlib
import os
import random
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from layerstore.digest import Digest
from layerstore.errors import AlreadyExists
from layerstore.oci import MediaType
from registry.metadata.store import ManifestRecord, MetadataStore, UploadRecord

REPO = "library/app"
OTHER = "team/other"
CREATED = 1_700_000_000.25


def blob(seed: str, algorithm: str = "sha256") -> Digest:
    """A digest made from ``seed`` (no content needs to exist for the metadata)."""
    return Digest.from_bytes(seed.encode(), algorithm)


def manifest(seed: str, *, subject: Digest | None = None, artifact_type: str | None = None,
             annotations: dict[str, str] | None = None, algorithm: str = "sha256",
             created_at: float = CREATED) -> ManifestRecord:
    """A manifest record named by ``seed``, referencing a config and a layer."""
    return ManifestRecord(
        digest=blob(f"manifest {seed}", algorithm),
        media_type=MediaType.OCI_MANIFEST,
        size=len(seed) + 100,
        references=(blob(f"config {seed}"), blob(f"layer {seed}", algorithm)),
        subject=subject,
        artifact_type=artifact_type,
        annotations=annotations,
        created_at=created_at,
    )


_CHILD = (
    "import sys\n"
    "from registry.testing.metadata_suite import child_main\n"
    "sys.exit(child_main(sys.argv[1:]))\n"
)


def child_main(argv: list[str]) -> int:
    """Entry of the child processes: ``<module:Suite> <tmp_path> bulk|crash <n> [<count>]``.

    ``bulk n count`` writes ``count`` rounds as worker ``n``; ``crash n`` writes rounds until
    killed. Each round is reported as ``done <i>`` once every write of it has returned.
    """
    spec, root, mode, number, *rest = argv
    module_name, _, qualname = spec.partition(":")
    suite_class: Any = functools.reduce(getattr, qualname.split("."),
                                        importlib.import_module(module_name))
    store = suite_class().make_store(Path(root))
    count = int(rest[0]) if mode == "bulk" else 1_000_000
    write = _bulk_round if mode == "bulk" else _crash_round
    for i in range(count):
        write(store, int(number), i)
        print("done", i, flush=True)
    store.close()
    return 0


def _bulk_round(store: MetadataStore, worker: int, i: int) -> None:
    store.put_manifest(f"proc/{worker}", manifest(f"{worker}-{i}"), (f"t{i}",))
    store.link_blob("shared", blob(f"{worker}-{i}"), i)
    store.put_manifest("shared", manifest(f"{worker}-{i}"), (f"w{worker}-{i}",))


def _crash_round(store: MetadataStore, round_: int, i: int) -> None:
    store.put_manifest("crash", manifest(f"{round_}-{i}"), (f"r{round_}-{i}",))
    store.link_blob("crash", blob(f"{round_}-{i}"), i)
    store.start_upload(UploadRecord(f"{round_}-{i}", "crash", float(i), {"i": str(i)}))


class MetadataStoreSuite(ABC):
    """Cases every metadata store passes; subclasses provide :meth:`make_store`."""

    @abstractmethod
    def make_store(self, tmp_path: Path) -> MetadataStore:
        """The store kept under ``tmp_path``: empty at first, the same one when reopened."""

    def check_integrity(self, tmp_path: Path) -> None:
        """Check the store's on-disk consistency after a crash (override; default: none)."""
        return None

    def spawn(self, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
        """Start a child process running :func:`child_main` on this suite's store."""
        spec = f"{type(self).__module__}:{type(self).__qualname__}"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        return subprocess.Popen(
            [sys.executable, "-c", _CHILD, spec, str(tmp_path), *args],
            stdout=subprocess.PIPE, text=True, env=env,
        )

    # Blob links.

    def test_link_and_blob_size(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        store.link_blob(REPO, blob("a"), 10)
        assert store.blob_size(REPO, blob("a")) == 10
        assert store.blob_size(REPO, blob("b")) is None
        assert store.blob_size(OTHER, blob("a")) is None
        assert store.repository_exists(REPO)
        assert not store.repository_exists(OTHER)

    def test_link_is_idempotent(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        store.link_blob(REPO, blob("a"), 10)
        store.link_blob(REPO, blob("a"), 10)
        assert store.blob_size(REPO, blob("a")) == 10
        assert store.linked_blobs() == {blob("a")}
        assert store.unlink_blob(REPO, blob("a"))
        assert store.blob_size(REPO, blob("a")) is None
        assert not store.unlink_blob(REPO, blob("a"))

    def test_links_are_per_repository(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        store.link_blob(REPO, blob("a"), 1)
        store.link_blob(OTHER, blob("a"), 1)
        assert store.unlink_blob(REPO, blob("a"))
        assert store.blob_size(REPO, blob("a")) is None
        assert store.blob_size(OTHER, blob("a")) == 1

    def test_linked_blobs(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        assert store.linked_blobs() == set()
        digests = {blob("a"), blob("b"), blob("c", "sha512")}
        for digest in digests:
            store.link_blob(REPO, digest, 3)
        store.link_blob(OTHER, blob("a"), 3)
        store.link_blob(OTHER, blob("d"), 3)
        assert store.linked_blobs() == digests | {blob("d")}

    def test_forget_blob(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        for repo in (REPO, OTHER, "third"):
            store.link_blob(repo, blob("a"), 1)
        store.link_blob(REPO, blob("b"), 2)
        store.forget_blob(blob("a"))
        store.forget_blob(blob("never linked"))
        assert all(store.blob_size(r, blob("a")) is None for r in (REPO, OTHER, "third"))
        assert store.blob_size(REPO, blob("b")) == 2
        assert store.linked_blobs() == {blob("b")}

    # Manifests.

    def test_put_get_manifest(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        record = manifest("m", subject=blob("s"), artifact_type="application/x.sig",
                          annotations={"org.opencontainers.image.title": "é ☃"})
        store.put_manifest(REPO, record)
        assert store.get_manifest(REPO, record.digest) == record
        assert store.get_manifest(OTHER, record.digest) is None
        assert store.get_manifest(REPO, blob("missing")) is None
        plain = manifest("plain")
        store.put_manifest(REPO, plain)
        got = store.get_manifest(REPO, plain.digest)
        assert got == plain and got is not None and got.annotations is None
        assert got.subject is None and got.artifact_type is None

    def test_resolve_by_tag_and_digest(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        record = manifest("m")
        store.put_manifest(REPO, record, ("v1", "latest"))
        assert store.resolve(REPO, "v1") == record
        assert store.resolve(REPO, "latest") == record
        assert store.resolve(REPO, str(record.digest)) == record
        assert store.resolve(REPO, "v2") is None
        assert store.resolve(REPO, str(blob("missing"))) is None
        assert store.resolve(OTHER, "v1") is None
        assert store.resolve(OTHER, str(record.digest)) is None

    def test_resolve_sha512(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        record = manifest("m", algorithm="sha512")
        store.put_manifest(REPO, record, ("v1",))
        assert store.resolve(REPO, str(record.digest)) == record
        assert store.resolve(REPO, "v1") == record
        assert store.get_manifest(REPO, record.digest) == record
        assert store.tagged(REPO) == {"v1": record.digest}

    def test_refresh_manifest(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        first = manifest("m")
        store.put_manifest(REPO, first, ("a",))
        again = manifest("m", annotations={"k": "v"}, created_at=CREATED + 10)
        store.put_manifest(REPO, again, ("b",))
        assert store.get_manifest(REPO, first.digest) == again
        assert store.tags(REPO) == ["a", "b"]
        assert list(store.manifests(REPO)) == [again]

    def test_tag_moves(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        old, new = manifest("old"), manifest("new")
        store.put_manifest(REPO, old, ("latest",))
        store.put_manifest(REPO, new, ("latest",))
        assert store.resolve(REPO, "latest") == new
        assert store.tagged(REPO) == {"latest": new.digest}
        assert store.get_manifest(REPO, old.digest) == old

    def test_delete_manifest_removes_its_tags_only(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        gone, kept = manifest("gone"), manifest("kept")
        store.put_manifest(REPO, gone, ("a", "b"))
        store.put_manifest(REPO, kept, ("c",))
        store.put_manifest(OTHER, gone, ("a",))
        assert store.delete_manifest(REPO, gone.digest)
        assert not store.delete_manifest(REPO, gone.digest)
        assert store.get_manifest(REPO, gone.digest) is None
        assert store.resolve(REPO, "a") is None
        assert store.tags(REPO) == ["c"]
        assert store.resolve(REPO, "c") == kept
        assert store.resolve(OTHER, "a") == gone

    def test_manifests_listing(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        records = [manifest(str(i)) for i in range(3)] + [manifest("x", algorithm="sha512")]
        for record in records:
            store.put_manifest(REPO, record)
        store.put_manifest(OTHER, manifest("elsewhere"))
        listed = list(store.manifests(REPO))
        assert sorted(listed, key=lambda r: str(r.digest)) == sorted(
            records, key=lambda r: str(r.digest))
        assert list(store.manifests("nobody")) == []

    # Tags.

    def test_tags_sorted_byte_order(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        names = ["b", "B", "a", "A", "_x", "1", "a.b", "a-b", "a_b", "Z9", "z", "latest"]
        store.put_manifest(REPO, manifest("m"), tuple(names))
        expected = sorted(names, key=lambda name: name.encode())
        assert store.tags(REPO) == expected
        assert set(store.tagged(REPO)) == set(names)

    def test_tags_pagination(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        names = [f"t{i:02d}" for i in range(10)]
        store.put_manifest(REPO, manifest("m"), tuple(reversed(names)))
        assert store.tags(REPO, n=3) == names[:3]
        assert store.tags(REPO, last="t02", n=3) == names[3:6]
        assert store.tags(REPO, last="t035") == names[4:]
        assert store.tags(REPO, last="t08") == ["t09"]
        assert store.tags(REPO, last="t09") == []
        assert store.tags(REPO, n=0) == []
        assert store.tags(REPO, n=100) == names
        assert store.tags(OTHER) == []

    def test_delete_tag_only(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        record = manifest("m")
        store.put_manifest(REPO, record, ("a", "b"))
        assert store.delete_tag(REPO, "a")
        assert not store.delete_tag(REPO, "a")
        assert not store.delete_tag(OTHER, "b")
        assert store.tags(REPO) == ["b"]
        assert store.resolve(REPO, "a") is None
        assert store.get_manifest(REPO, record.digest) == record

    # Referrers.

    def test_referrers(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        subject = manifest("subject")
        store.put_manifest(REPO, subject, ("v1",))
        sig = manifest("sig", subject=subject.digest, artifact_type="application/x.sig")
        sbom = manifest("sbom", subject=subject.digest, artifact_type="application/x.sbom")
        sig2 = manifest("sig2", subject=subject.digest, artifact_type="application/x.sig")
        unrelated = manifest("unrelated", subject=blob("another subject"))
        elsewhere = manifest("elsewhere", subject=subject.digest)
        for record in (sig, sbom, sig2, unrelated):
            store.put_manifest(REPO, record)
        store.put_manifest(OTHER, elsewhere)
        by_digest = lambda records: sorted(records, key=lambda r: str(r.digest))  # noqa: E731
        assert store.referrers(REPO, subject.digest) == by_digest([sig, sbom, sig2])
        assert store.referrers(REPO, subject.digest, "application/x.sig") == by_digest(
            [sig, sig2])
        assert store.referrers(REPO, subject.digest, "application/x.none") == []
        assert store.referrers(OTHER, subject.digest) == [elsewhere]
        assert store.referrers(REPO, blob("no such subject")) == []

    # Repositories.

    def test_repositories_sorted_and_paginated(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        names = ["b", "a/x", "a", "A", "a-b", "library/z", "a_b"]
        for i, name in enumerate(names):
            if i % 2:
                store.link_blob(name, blob(name), 1)
            else:
                store.put_manifest(name, manifest(name))
        expected = sorted(names, key=lambda name: name.encode())
        assert store.repositories() == expected
        assert store.repositories(n=2) == expected[:2]
        assert store.repositories(last=expected[1], n=2) == expected[2:4]
        assert store.repositories(last=expected[-1]) == []
        assert store.repositories(n=0) == []

    def test_repositories_only_with_content(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        store.start_upload(UploadRecord("u1", "uploading", CREATED))
        store.link_blob("unlinked", blob("a"), 1)
        store.unlink_blob("unlinked", blob("a"))
        store.put_manifest("deleted", manifest("m"), ("t",))
        store.delete_manifest("deleted", manifest("m").digest)
        store.put_manifest("kept", manifest("m"))
        assert store.repositories() == ["kept"]
        for name in ("uploading", "unlinked", "deleted", "never"):
            assert not store.repository_exists(name), name
        assert store.repository_exists("kept")

    def test_namespace_usage_counts_each_digest_once(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        assert store.namespace_usage("team") == (0, 0)
        store.link_blob("team/a", blob("shared"), 1000)
        store.link_blob("team/b", blob("shared"), 1000)
        store.link_blob("team/b/deep", blob("own"), 10)
        store.link_blob("teammate/x", blob("other"), 7)
        store.link_blob("team", blob("bare"), 5)
        store.put_manifest("team/a", manifest("m"))
        size = manifest("m").size
        assert store.namespace_usage("team") == (3, 1010 + size)
        assert store.namespace_usage("teammate") == (1, 7)
        assert store.namespace_holds("team", blob("shared"))
        assert store.namespace_holds("team", manifest("m").digest)
        assert not store.namespace_holds("team", blob("other"))
        assert not store.namespace_holds("team", blob("bare"))
        store.unlink_blob("team/b/deep", blob("own"))
        assert store.namespace_usage("team") == (2, 1000 + size)

    def test_repository_usage_counts_each_digest_once(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        assert store.repository_usage("team/a") == 0
        store.link_blob("team/a", blob("layer"), 1000)
        store.link_blob("team/a/deep", blob("deeper"), 10)
        store.link_blob("team/ab", blob("neighbour"), 7)
        store.put_manifest("team/a", manifest("m"))
        store.put_manifest("team/a", manifest("m"), ("v1",))
        assert store.repository_usage("team/a") == 1000 + manifest("m").size
        assert store.repository_usage("team/a/deep") == 10
        store.unlink_blob("team/a", blob("layer"))
        assert store.repository_usage("team/a") == manifest("m").size

    # Uploads.

    def test_upload_lifecycle(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        record = UploadRecord("0f1e-uuid", REPO, CREATED, {"mount": "x", "ünï": "☃"})
        store.start_upload(record)
        assert store.get_upload("0f1e-uuid") == record
        assert store.uploads() == [record]
        with pytest.raises(AlreadyExists):
            store.start_upload(UploadRecord("0f1e-uuid", OTHER, CREATED))
        assert store.get_upload("0f1e-uuid") == record
        assert store.end_upload("0f1e-uuid")
        assert not store.end_upload("0f1e-uuid")
        assert store.get_upload("0f1e-uuid") is None
        assert store.uploads() == []

    def test_update_upload_replaces_labels(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        record = UploadRecord("u-1", REPO, CREATED, {"old": "1"})
        store.start_upload(record)
        state = {"upload_id": "2~abc", "parts": '[[1,"\\"e1\\"",5242880]]', "offset": "7"}
        assert store.update_upload("u-1", state)
        got = store.get_upload("u-1")
        assert got == UploadRecord("u-1", REPO, CREATED, state)
        assert store.uploads() == [got]
        assert store.update_upload("u-1", {})
        assert store.get_upload("u-1") == UploadRecord("u-1", REPO, CREATED, {})
        assert not store.update_upload("never", {"x": "y"})
        assert store.get_upload("never") is None
        store.end_upload("u-1")
        assert not store.update_upload("u-1", state)
        reopened = self.make_store(tmp_path)
        assert reopened.get_upload("u-1") is None

    def test_uploads_started_before(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        records = [UploadRecord(f"u{i}", REPO, 100.0 * i) for i in (3, 1, 2)]
        for record in records:
            store.start_upload(record)
        by_start = sorted(records, key=lambda r: r.started_at)
        assert store.uploads() == by_start
        assert store.uploads(started_before=250.0) == by_start[:2]
        assert store.uploads(started_before=100.0) == []
        assert store.uploads(started_before=1e12) == by_start

    # Atomicity.

    def test_failed_put_manifest_leaves_nothing(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        bad_tags = ("good", 42)
        with pytest.raises(Exception):  # noqa: B017 - any error will do; what is left matters
            # A tag of the wrong type, on purpose.
            store.put_manifest(REPO, manifest("m"), bad_tags)  # type: ignore[arg-type]
        assert store.get_manifest(REPO, manifest("m").digest) is None
        assert store.tags(REPO) == []
        assert store.repositories() == []
        first = manifest("kept")
        store.put_manifest(REPO, first, ("a",))
        changed = manifest("kept", annotations={"k": "v"})
        with pytest.raises(Exception):  # noqa: B017
            # A tag of the wrong type, on purpose.
            store.put_manifest(REPO, changed, ("b", None))  # type: ignore[arg-type]
        assert store.get_manifest(REPO, first.digest) == first
        assert store.tagged(REPO) == {"a": first.digest}

    def test_readers_never_see_partial_puts(self, tmp_path: Path) -> None:
        writer_store = self.make_store(tmp_path)
        reader_store = self.make_store(tmp_path)
        records = [manifest(str(i)) for i in range(60)]
        problems: list[str] = []

        def write() -> None:
            for i, record in enumerate(records):
                writer_store.put_manifest(REPO, record, (f"a{i}", f"b{i}", f"c{i}"))

        writer = threading.Thread(target=write)
        writer.start()
        while True:
            done = not writer.is_alive()
            tagged = reader_store.tagged(REPO)
            for name, digest in tagged.items():
                i = int(name[1:])
                group = {tagged.get(f"{p}{i}") for p in "abc"}
                if group != {records[i].digest}:
                    problems.append(f"round {i}: tags seen {group}")
                if reader_store.get_manifest(REPO, digest) != records[i]:
                    problems.append(f"round {i}: tag {name} without its manifest")
            if done:
                break
        writer.join()
        assert problems == []
        assert len(reader_store.tagged(REPO)) == 3 * len(records)

    # Concurrency, reopening, crashes.

    def test_threads_write_at_once(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        workers, rounds = 8, 25

        def work(worker: int) -> None:
            for i in range(rounds):
                _bulk_round(store, worker, i)
                store.start_upload(UploadRecord(f"{worker}-{i}", "shared", float(i)))

        with ThreadPoolExecutor(workers) as pool:
            for future in [pool.submit(work, w) for w in range(workers)]:
                future.result()
        self._check_bulk(store, workers, rounds)
        assert len(store.uploads()) == workers * rounds

    def test_processes_write_at_once(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        workers, rounds = 4, 50
        children = [self.spawn(tmp_path, "bulk", str(w), str(rounds)) for w in range(workers)]
        for child in children:
            out, _ = child.communicate(timeout=600)
            assert child.returncode == 0
            assert out.split("\n")[-2] == f"done {rounds - 1}"
        self._check_bulk(store, workers, rounds)

    @staticmethod
    def _check_bulk(store: MetadataStore, workers: int, rounds: int) -> None:
        shared_tags = set(store.tags("shared"))
        assert len(shared_tags) == workers * rounds
        for w in range(workers):
            assert store.tags(f"proc/{w}") == sorted(f"t{i}" for i in range(rounds))
            for i in range(rounds):
                record = manifest(f"{w}-{i}")
                assert store.resolve(f"proc/{w}", f"t{i}") == record
                assert store.resolve("shared", f"w{w}-{i}") == record
                assert store.blob_size("shared", blob(f"{w}-{i}")) == i
        assert store.repositories() == sorted(["shared", *(f"proc/{w}" for w in range(workers))])

    def test_reopen_keeps_everything(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        subject = manifest("subject", algorithm="sha512", annotations={"a": "b"})
        store.put_manifest(REPO, subject, ("v1", "latest"))
        store.put_manifest(REPO, manifest("sig", subject=subject.digest, artifact_type="x/y"))
        store.put_manifest(OTHER, manifest("other"), ("main",))
        store.link_blob(REPO, blob("layer"), 123)
        store.link_blob(OTHER, blob("big", "sha512"), 1 << 40)
        store.start_upload(UploadRecord("u", OTHER, CREATED, {"k": "v"}))

        def snapshot(s: MetadataStore) -> tuple[object, ...]:
            return (
                s.repositories(), s.linked_blobs(), s.uploads(),
                [(r, s.tagged(r), sorted(s.manifests(r), key=lambda m: str(m.digest)))
                 for r in s.repositories()],
                s.referrers(REPO, subject.digest), s.blob_size(OTHER, blob("big", "sha512")),
            )

        before = snapshot(store)
        store.close()
        reopened = self.make_store(tmp_path)
        assert snapshot(reopened) == before
        reopened.close()

    def test_sigkill_during_writes(self, tmp_path: Path) -> None:
        self.make_store(tmp_path).close()
        rng = random.Random(20240607)
        reported: dict[int, list[int]] = {}
        for round_ in range(5):
            child = self.spawn(tmp_path, "crash", str(round_))
            assert child.stdout is not None
            target, done = rng.randrange(3, 30), list[int]()
            try:
                while len(done) < target and (line := child.stdout.readline()):
                    done.append(int(line.split()[1]))
                time.sleep(rng.uniform(0, 0.01))  # land somewhere inside a later round
            finally:
                child.kill()
                child.wait()
            # Rounds reported before the kill count too; a torn last line does not.
            done += [int(line.split()[1]) for line in child.stdout.read().splitlines()
                     if line.startswith("done ") and line[5:].isdigit()]
            child.stdout.close()
            assert len(done) >= target, f"child exited early ({child.returncode})"
            reported[round_] = done
            self.check_integrity(tmp_path)
            store = self.make_store(tmp_path)
            for r, rounds in reported.items():
                for i in rounds:
                    assert store.resolve("crash", f"r{r}-{i}") == manifest(f"{r}-{i}")
                    assert store.blob_size("crash", blob(f"{r}-{i}")) == i
                    upload = store.get_upload(f"{r}-{i}")
                    assert upload is not None and upload.labels == {"i": str(i)}
            store.close()


__all__ = ["MetadataStoreSuite", "blob", "child_main", "manifest"]
