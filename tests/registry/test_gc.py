"""Garbage collection on a real content store (images made by layerstore) and the SQLite
metadata store: what is swept, what is kept, and nothing lost while pushes run alongside."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from layerstore.assembly import assemble_image
from layerstore.content.copy import put_bytes
from layerstore.content.local import LocalStore
from layerstore.diff import write_tree
from layerstore.digest import Digest
from layerstore.errors import InvalidArgument
from layerstore.layerblob import Layer
from layerstore.oci import (
    Descriptor,
    Image,
    ImageConfig,
    Index,
    Manifest,
    MediaType,
    Platform,
    describe,
)
from registry.gc import CONTENT_DIR, METADATA_FILE, GCReport, ManifestRef, collect, run_cli
from registry.locking import push_guard
from registry.metadata.sqlite import SqliteMetadataStore
from registry.metadata.store import ManifestRecord, UploadRecord
from registry.storage.filesystem import FilesystemDriver
from registry.storage.paths import upload_path
from registry.storage.sweeping import FilesystemContent, Sweepable

REPO = "team/app"
OTHER = "team/other"
SIG = "application/vnd.example.signature"
ATTEMPTS = 500


@dataclass
class RegistryRoot:
    """A registry root laid out as the server lays it out, used directly; ``sweep`` is what
    the collection sees of it."""

    root: Path
    content: LocalStore
    meta: SqliteMetadataStore
    trees: Path
    sweep: Sweepable

    def gc(self, *, grace_seconds: float = 0, **options: Any) -> GCReport:
        """Collect, with grace 0 unless told otherwise."""
        return collect(self.sweep, self.meta, lock_root=self.root,
                       grace_seconds=grace_seconds, **options)

    def layer(self, name: str) -> Layer:
        """A gzip layer of a small tree whose content depends on ``name``."""
        tree = self.trees / name
        (tree / "etc").mkdir(parents=True)
        (tree / "etc" / "name").write_text(f"{name}\n" * 100)
        (tree / "bin").mkdir()
        (tree / "bin" / "tool").write_bytes(name.encode() * 1000)
        return write_tree(tree, self.content)

    def put(self, repo: str, model: Manifest | Index, tags: Sequence[str] = (),
            references: Sequence[Digest] = ()) -> Descriptor:
        """Store a manifest or index document and record it in ``repo``."""
        raw = model.to_json()
        media_type = model.media_type or MediaType.OCI_MANIFEST
        put_bytes(self.content, raw)
        desc = describe(media_type, raw)
        subject = model.subject.digest if model.subject else None
        self.meta.put_manifest(repo, ManifestRecord(
            desc.digest, media_type, desc.size, tuple(references), subject,
            model.artifact_type, model.annotations, time.time()), tuple(tags))
        return desc

    def image(self, repo: str, layers: Sequence[Layer], tags: Sequence[str] = (),
              label: str = "") -> Descriptor:
        """Assemble and push an image: link its blobs, record its manifest."""
        stored = assemble_image(self.content, Image(config=ImageConfig(labels={"l": label})),
                                layers)
        for desc in (stored.config, *(layer.descriptor for layer in layers)):
            self.meta.link_blob(repo, desc.digest, desc.size)
        refs = (stored.config.digest, *(layer.descriptor.digest for layer in layers))
        with self.content.reader(stored.manifest.digest) as f:
            raw = f.read()
        return self.put(repo, Manifest.from_json(raw), tags, refs)

    def referrer(self, repo: str, subject: Descriptor, payload: bytes,
                 tags: Sequence[str] = ()) -> Descriptor:
        """Push an artifact (empty config, one blob) whose subject is ``subject``."""
        empty, blob = b"{}", payload
        for data in (empty, blob):
            self.meta.link_blob(repo, put_bytes(self.content, data), len(data))
        artifact = Manifest(config=describe(MediaType.OCI_EMPTY, empty),
                            layers=(describe("application/octet-stream", blob),),
                            subject=subject, artifact_type=SIG)
        return self.put(repo, artifact, tags,
                        (Digest.from_bytes(empty), Digest.from_bytes(blob)))

    def blobs(self) -> set[Digest]:
        """Every blob in the content store."""
        return {info.digest for info in self.content.walk()}


@pytest.fixture(params=["content-store", "filesystem-driver"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryRoot]:
    """An empty registry root, swept as a content store or (as ``registry gc`` does) through
    the filesystem driver, with the upload ingests of earlier releases."""
    top = tmp_path / "registry"
    meta = SqliteMetadataStore(top / METADATA_FILE)
    content = LocalStore(top / CONTENT_DIR)
    sweep: Sweepable = content
    if request.param == "filesystem-driver":
        sweep = FilesystemContent(FilesystemDriver(top / CONTENT_DIR), meta)
    yield RegistryRoot(top, content, meta, tmp_path / "trees", sweep)
    meta.close()


def assert_intact(r: RegistryRoot) -> None:
    """Every blob hashes to its name; every manifest has its bytes and every blob it refers
    to, present, verifying and (unless it is a manifest of the repository) linked."""
    for info in r.content.walk():
        with r.content.reader(info.digest) as f:
            assert Digest.from_stream(f, info.digest.algorithm) == info.digest
    for repo in r.meta.repositories():
        records = {record.digest: record for record in r.meta.manifests(repo)}
        for record in records.values():
            assert r.content.exists(record.digest), f"{repo}@{record.digest}"
            for ref in record.references:
                assert r.content.exists(ref), f"{repo}@{record.digest} lost {ref}"
                assert ref in records or r.meta.blob_size(repo, ref) is not None, ref
        for tag in r.meta.tags(repo):
            assert r.meta.resolve(repo, tag) is not None, f"{repo}:{tag}"


def image_blobs(r: RegistryRoot, repo: str, manifest: Descriptor) -> set[Digest]:
    """The manifest's digest and everything it refers to."""
    record = r.meta.get_manifest(repo, manifest.digest)
    assert record is not None
    return {manifest.digest, *record.references}


def test_deleted_manifest_frees_only_its_blobs(root: RegistryRoot) -> None:
    r = root
    base, own, other = r.layer("base"), r.layer("one"), r.layer("two")
    one = r.image(REPO, [base, own], ["v1"], "one")
    two = r.image(REPO, [base, other], ["v2"], "two")
    one_blobs = image_blobs(r, REPO, one)
    orphan = put_bytes(r.content, b"uploaded but never used by a manifest")
    r.meta.link_blob(REPO, orphan, 37)
    before = r.blobs()
    gone = (one_blobs - {base.descriptor.digest}) | {orphan}
    freed = sum(r.content.info(digest).size for digest in gone)
    assert r.meta.delete_manifest(REPO, one.digest)

    report = r.gc()
    assert set(report.blobs_deleted) == gone
    assert report.bytes_freed == freed
    assert r.blobs() == before - gone
    assert r.meta.blob_size(REPO, orphan) is None
    assert r.meta.blob_size(REPO, own.descriptor.digest) is None
    assert r.meta.blob_size(REPO, base.descriptor.digest) is not None
    assert r.meta.resolve(REPO, "v2") is not None
    assert report.manifests_deleted == () and report.manifests_kept == 1
    assert image_blobs(r, REPO, two) <= r.blobs()
    assert_intact(r)


def test_bytes_freed_and_kept_counts(root: RegistryRoot) -> None:
    r = root
    garbage = [b"garbage one" * 10, b"garbage two" * 20]
    for data in garbage:
        put_bytes(r.content, data)
    r.image(REPO, [r.layer("kept")], ["v1"])
    kept = r.blobs() - {Digest.from_bytes(d) for d in garbage}
    report = r.gc()
    assert report.bytes_freed == sum(len(d) for d in garbage)
    assert report.blobs_kept == len(kept) and report.blobs_in_grace == 0
    assert r.blobs() == kept


def test_blobs_shared_across_repositories_are_kept(root: RegistryRoot) -> None:
    r = root
    shared = r.layer("shared")
    gone = r.image(REPO, [shared], ["v1"], "gone")
    r.image(OTHER, [shared], ["v1"], "kept")
    r.meta.delete_manifest(REPO, gone.digest)
    report = r.gc()
    assert shared.descriptor.digest not in report.blobs_deleted
    assert gone.digest in report.blobs_deleted
    assert r.content.exists(shared.descriptor.digest)
    assert_intact(r)


def test_untagged_manifests_only_with_delete_untagged(root: RegistryRoot) -> None:
    r = root
    one = r.image(REPO, [r.layer("one")], ["v1"], "one")
    two = r.image(REPO, [r.layer("two")], ["v2"], "two")
    one_blobs = image_blobs(r, REPO, one)
    assert r.meta.delete_tag(REPO, "v1")
    before = r.blobs()

    report = r.gc()
    assert report.blobs_deleted == () and report.manifests_deleted == ()
    assert r.blobs() == before and r.meta.get_manifest(REPO, one.digest) is not None

    report = r.gc(delete_untagged=True)
    assert report.manifests_deleted == (ManifestRef(REPO, one.digest),)
    assert set(report.blobs_deleted) == one_blobs
    assert r.meta.get_manifest(REPO, one.digest) is None
    assert r.blobs() == before - one_blobs
    assert image_blobs(r, REPO, two) <= r.blobs()
    assert_intact(r)


def test_index_keeps_its_children(root: RegistryRoot) -> None:
    r = root
    children = []
    for arch in ("amd64", "arm64"):
        child = r.image(REPO, [r.layer(arch)], (), arch)
        children.append(Descriptor(child.media_type, child.digest, child.size,
                                   platform=Platform(architecture=arch, os="linux")))
    index = r.put(REPO, Index(manifests=tuple(children)), ["multi"],
                  [c.digest for c in children])
    before = r.blobs()
    report = r.gc(delete_untagged=True)
    assert report.manifests_deleted == () and report.blobs_deleted == ()
    assert report.manifests_kept == 3 and r.blobs() == before
    assert_intact(r)

    r.meta.delete_tag(REPO, "multi")
    report = r.gc(delete_untagged=True)
    assert set(report.manifests_deleted) == {ManifestRef(REPO, d.digest)
                                             for d in (index, *children)}
    assert r.blobs() == set()
    assert r.meta.repositories() == []


def test_referrers_are_kept_with_their_subject(root: RegistryRoot) -> None:
    r = root
    subject = r.image(REPO, [r.layer("subject")], ["v1"])
    sig = r.referrer(REPO, subject, b"signature of the image")
    sig_of_sig = r.referrer(REPO, sig, b"countersignature")
    lost = r.referrer(REPO, describe(MediaType.OCI_MANIFEST, b"never pushed"), b"dangling")
    report = r.gc(delete_untagged=True)
    assert report.manifests_deleted == (ManifestRef(REPO, lost.digest),)
    assert set(report.blobs_deleted) == {lost.digest, Digest.from_bytes(b"dangling")}
    for kept in (subject, sig, sig_of_sig):
        assert r.meta.get_manifest(REPO, kept.digest) is not None
    assert_intact(r)

    r.meta.delete_tag(REPO, "v1")
    report = r.gc(delete_untagged=True)
    assert set(report.manifests_deleted) == {ManifestRef(REPO, d.digest)
                                             for d in (subject, sig, sig_of_sig)}
    assert r.blobs() == set()


def test_tagged_referrer_keeps_itself_not_its_subject(root: RegistryRoot) -> None:
    r = root
    subject = r.image(REPO, [r.layer("subject")])
    sig = r.referrer(REPO, subject, b"signature", tags=["sig"])
    report = r.gc(delete_untagged=True)
    assert report.manifests_deleted == (ManifestRef(REPO, subject.digest),)
    assert r.meta.get_manifest(REPO, sig.digest) is not None
    assert_intact(r)


def test_grace_period_keeps_fresh_blobs_and_manifests(root: RegistryRoot) -> None:
    r = root
    fresh = put_bytes(r.content, b"just uploaded, its manifest is on the way")
    untagged = r.image(REPO, [r.layer("untagged")])
    before = r.blobs()
    report = r.gc(grace_seconds=3600, delete_untagged=True)
    assert report.blobs_deleted == () and report.manifests_deleted == ()
    assert report.blobs_in_grace == 1
    assert r.blobs() == before

    report = r.gc(grace_seconds=3600, delete_untagged=True, now=time.time() + 7200)
    assert report.manifests_deleted == (ManifestRef(REPO, untagged.digest),)
    assert fresh in report.blobs_deleted
    assert r.blobs() == set()


def test_dangling_links_are_forgotten(root: RegistryRoot) -> None:
    r = root
    r.meta.link_blob(REPO, Digest.from_bytes(b"bytes that never arrived"), 24)
    r.image(REPO, [r.layer("kept")], ["v1"])
    linked = r.meta.linked_blobs()
    report = r.gc()
    assert report.links_forgotten == 1
    assert r.meta.linked_blobs() == linked - {Digest.from_bytes(b"bytes that never arrived")}
    assert_intact(r)


def state(r: RegistryRoot) -> tuple[object, ...]:
    """Everything a collection could change."""
    repos = r.meta.repositories()
    return (
        r.blobs(), repos, r.meta.linked_blobs(), r.meta.uploads(),
        [status.ref for status in r.content.list_statuses()],
        [(repo, r.meta.tagged(repo), list(r.meta.manifests(repo))) for repo in repos],
    )


def test_dry_run_changes_nothing(root: RegistryRoot) -> None:
    r = root
    one = r.image(REPO, [r.layer("one")], ["v1"])
    r.image(REPO, [r.layer("two")], ["v2"])
    r.meta.delete_tag(REPO, "v1")
    put_bytes(r.content, b"orphan")
    r.meta.link_blob(OTHER, Digest.from_bytes(b"missing"), 7)
    r.meta.start_upload(UploadRecord("old", REPO, time.time() - 100))
    with r.content.writer("upload-old") as writer:
        writer.write(b"partial")
    before = state(r)
    now = time.time()
    options = {"delete_untagged": True, "upload_max_age": 10, "now": now}
    dry = r.gc(dry_run=True, **options)
    assert state(r) == before
    assert dry.dry_run and "would delete" in dry.summary()
    assert dry.manifests_deleted == (ManifestRef(REPO, one.digest),)
    assert dry.uploads_purged == ("old",) and dry.links_forgotten == 1

    real = r.gc(**options)
    assert not real.dry_run
    assert (real.manifests_deleted, real.blobs_deleted, real.bytes_freed, real.uploads_purged,
            real.manifests_kept, real.blobs_kept, real.links_forgotten) == (
        dry.manifests_deleted, dry.blobs_deleted, dry.bytes_freed, dry.uploads_purged,
        dry.manifests_kept, dry.blobs_kept, dry.links_forgotten)
    assert state(r) != before
    assert_intact(r)


def test_uploads_purged_by_age(root: RegistryRoot) -> None:
    r = root
    start = time.time()
    for uuid, started in (("old", start - 7200), ("new", start)):
        r.meta.start_upload(UploadRecord(uuid, REPO, started))
        with r.content.writer(f"upload-{uuid}") as writer:
            writer.write(uuid.encode() * 100)
    with r.content.writer("upload-orphan") as writer:
        writer.write(b"a session that was never recorded")
    with r.content.writer("put-other") as writer:
        writer.write(b"not an upload")

    assert r.gc(grace_seconds=3600).uploads_purged == ()
    report = r.gc(grace_seconds=3600, upload_max_age=3600, now=start + 10)
    assert report.uploads_purged == ("old",)
    assert [u.uuid for u in r.meta.uploads()] == ["new"]
    refs = sorted(status.ref for status in r.content.list_statuses())
    assert refs == ["put-other", "upload-new", "upload-orphan"]

    report = r.gc(grace_seconds=3600, upload_max_age=3600, now=start + 7200)
    assert sorted(report.uploads_purged) == ["new", "orphan"]
    assert r.meta.uploads() == []
    assert [status.ref for status in r.content.list_statuses()] == ["put-other"]


def test_driver_uploads_purged_by_age(tmp_path: Path) -> None:
    top = tmp_path / "registry"
    meta = SqliteMetadataStore(top / METADATA_FILE)
    driver = FilesystemDriver(top / CONTENT_DIR)
    sweep = FilesystemContent(driver, meta)
    start = time.time()
    for uuid, started in (("old", start - 7200), ("new", start)):
        meta.start_upload(UploadRecord(uuid, REPO, started, {"size": "300"}))
        driver.put_content(upload_path(uuid), uuid.encode() * 100)
    driver.put_content(upload_path("orphan"), b"a session that was never recorded")
    try:
        report = collect(sweep, meta, lock_root=top, grace_seconds=3600,
                         upload_max_age=3600, now=start + 10)
        assert report.uploads_purged == ("old",)
        assert [u.uuid for u in meta.uploads()] == ["new"]
        assert sorted(s.ref for s in sweep.list_statuses()) == ["upload-new", "upload-orphan"]
        report = collect(sweep, meta, lock_root=top, grace_seconds=3600,
                         upload_max_age=3600, now=start + 7200)
        assert sorted(report.uploads_purged) == ["new", "orphan"]
        assert meta.uploads() == []
        assert sweep.list_statuses() == []
    finally:
        meta.close()


def test_held_driver_upload_is_left_alone(tmp_path: Path) -> None:
    top = tmp_path / "registry"
    meta = SqliteMetadataStore(top / METADATA_FILE)
    driver = FilesystemDriver(top / CONTENT_DIR)
    meta.start_upload(UploadRecord("busy", REPO, time.time() - 7200, {"size": "0"}))
    writer = driver.writer(upload_path("busy"))
    try:
        writer.write(b"a request is writing this right now")
        report = collect(FilesystemContent(driver, meta), meta, lock_root=top,
                         grace_seconds=3600, upload_max_age=60)
        assert report.uploads_purged == ()
        assert meta.get_upload("busy") is not None
        writer.close()
        report = collect(FilesystemContent(driver, meta), meta, lock_root=top,
                         grace_seconds=3600, upload_max_age=60)
        assert report.uploads_purged == ("busy",)
        assert not driver.local_path(upload_path("busy")).exists()
    finally:
        writer.close()
        meta.close()


def test_held_upload_ingest_is_left_alone(root: RegistryRoot) -> None:
    r = root
    r.meta.start_upload(UploadRecord("busy", REPO, time.time() - 7200))
    with r.content.writer("upload-busy") as writer:
        writer.write(b"a request is writing this right now")
        report = r.gc(grace_seconds=3600, upload_max_age=60)
    assert report.uploads_purged == ()
    assert r.meta.get_upload("busy") is not None


def test_bad_arguments(root: RegistryRoot) -> None:
    with pytest.raises(InvalidArgument, match="grace_seconds"):
        root.gc(grace_seconds=-1)
    with pytest.raises(InvalidArgument, match="upload_max_age"):
        root.gc(upload_max_age=float("nan"))


# Pushing while collecting.


def upload(r: RegistryRoot, repo: str, blobs: Sequence[bytes]) -> list[Digest]:
    """Upload blobs and link each, under the push guard, if it still exists then."""
    digests = []
    for data in blobs:
        digest = put_bytes(r.content, data)
        with push_guard(r.root):
            if r.content.exists(digest):
                r.meta.link_blob(repo, digest, len(data))
        digests.append(digest)
    return digests


def try_put(r: RegistryRoot, repo: str, digests: Sequence[Digest], raw: bytes, media_type: str,
            tags: Sequence[str] = (), children: Sequence[Digest] = ()) -> Digest | None:
    """Put a manifest as the server does: under the push guard, and only if every blob and
    child it needs is there (else the server answers BLOB_UNKNOWN: ``None``)."""
    digest = put_bytes(r.content, raw)
    with push_guard(r.root):
        present = r.content.exists(digest) and all(
            r.meta.blob_size(repo, d) is not None and r.content.exists(d) for d in digests
        ) and all(r.meta.get_manifest(repo, c) is not None and r.content.exists(c)
                  for c in children)
        if not present:
            return None
        r.meta.put_manifest(repo, ManifestRecord(
            digest, media_type, len(raw), (*digests, *children), created_at=time.time()),
            tuple(tags))
        return digest


def push(r: RegistryRoot, repo: str, blobs: Sequence[bytes], raw: bytes,
         tags: Sequence[str] = ()) -> Digest:
    """Push an image as a client does, uploading again whatever the server misses."""
    for _ in range(ATTEMPTS):
        digest = try_put(r, repo, upload(r, repo, blobs), raw, MediaType.OCI_MANIFEST, tags)
        if digest is not None:
            return digest
    raise AssertionError(f"could not push to {repo} in {ATTEMPTS} attempts")


def push_index(r: RegistryRoot, repo: str, images: Sequence[tuple[bytes, list[bytes]]],
               tag: str) -> Digest:
    """Push the images untagged, then an index of them, again until it is accepted."""
    raw = Index(manifests=tuple(describe(MediaType.OCI_MANIFEST, m) for m, _ in images)
                ).to_json()
    for _ in range(ATTEMPTS):
        children = [push(r, repo, blobs, manifest) for manifest, blobs in images]
        digest = try_put(r, repo, [], raw, MediaType.OCI_INDEX, [tag], children)
        if digest is not None:
            return digest
    raise AssertionError(f"could not push an index to {repo} in {ATTEMPTS} attempts")


def write_images(r: RegistryRoot, writer: int, count: int, tagged: dict[str, Digest],
                 pushed: threading.Semaphore) -> None:
    """Push ``count`` images (moving three tags round) and, every third, an index of the
    last two; record where each tag should point and release ``pushed`` after each push."""
    repo = f"writer/{writer}"
    base = b"shared base layer" * 500
    recent: list[tuple[bytes, list[bytes]]] = []
    for i in range(count):
        layer = f"writer {writer} image {i}".encode() * 300
        config = Image(config=ImageConfig(labels={"image": f"{writer}-{i}"})).to_json()
        raw = Manifest(config=describe(MediaType.OCI_CONFIG, config), layers=(
            describe(MediaType.OCI_LAYER, base), describe(MediaType.OCI_LAYER, layer))).to_json()
        blobs = [config, base, layer]
        tagged[f"{repo}:t{i % 3}"] = push(r, repo, blobs, raw, [f"t{i % 3}"])
        pushed.release()
        recent = [*recent[-1:], (raw, blobs)]
        if i % 3 == 2:
            tagged[f"{repo}:multi"] = push_index(r, repo, recent, "multi")
            pushed.release()


def test_gc_concurrent_with_writers(root: RegistryRoot) -> None:
    r = root
    tagged: dict[str, Digest] = {}
    # One collection per completed push: with grace 0, collecting without pause would
    # starve every push, as the grace period exists to prevent.
    pushed = threading.Semaphore(0)
    writers = [threading.Thread(target=write_images, args=(r, w, 12, tagged, pushed))
               for w in range(3)]
    for thread in writers:
        thread.start()
    runs = 0
    while any(thread.is_alive() for thread in writers):
        if pushed.acquire(timeout=0.1):
            r.gc(delete_untagged=runs % 2 == 1)
            runs += 1
    while pushed.acquire(blocking=False):
        r.gc(delete_untagged=runs % 2 == 1)
        runs += 1
    for thread in writers:
        thread.join()
    assert runs == 3 * 16
    assert_intact(r)
    for name, digest in tagged.items():
        repo, tag = name.split(":")
        record = r.meta.resolve(repo, tag)
        assert record is not None and record.digest == digest, name
    r.gc(delete_untagged=True)
    assert_intact(r)
    assert len(tagged) == 3 * 4


# The command line.


def test_run_cli(root: RegistryRoot, capsys: pytest.CaptureFixture[str]) -> None:
    r = root
    one = r.image(REPO, [r.layer("one")], ["v1"])
    r.meta.delete_tag(REPO, "v1")
    assert run_cli(r.root, ["--dry-run", "--grace", "0", "--delete-untagged"]) == 0
    assert "manifests: would delete 1" in capsys.readouterr().out
    assert r.meta.get_manifest(REPO, one.digest) is not None
    assert run_cli(r.root, ["--grace", "0", "--delete-untagged", "--upload-max-age", "0"]) == 0
    out = capsys.readouterr().out
    assert "manifests: deleted 1" in out and "blobs: deleted 3" in out
    assert r.blobs() == set()


@pytest.mark.parametrize("argv", [["--grace", "-1"], ["--grace", "soon"], ["--unknown"]])
def test_run_cli_bad_arguments(tmp_path: Path, argv: list[str],
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(tmp_path, argv) == 2
    assert "registry gc" in capsys.readouterr().err


def test_run_cli_without_a_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(tmp_path / "nothing here", []) == 1
    assert "no registry" in capsys.readouterr().err
