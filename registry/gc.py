"""Mark-and-sweep garbage collection of a registry's blobs, manifests and upload sessions.

A registry root holds the blobs and upload sessions in ``<root>/content`` (the filesystem
storage driver's root, swept as :class:`~registry.storage.sweeping.FilesystemContent`; with
``storage = "s3"``, the bucket, as :class:`~registry.storage.sweeping.DriverContent`),
the metadata in ``<root>/metadata.db`` (or the PostgreSQL database of ``metadata_url``) and the
GC lock in ``<root>/gc.lock`` (see :mod:`registry.locking`).

*Mark*, per repository: the roots are the tagged manifests, and every manifest unless
``delete_untagged`` (with it, untagged manifests younger than the grace period are roots too,
so that a push in progress keeps the children it put before its index). From the roots the
mark follows references (index → child manifests, manifest → config and layers) and
referrers (a manifest whose ``subject`` is kept is kept), transitively. Every kept manifest's
own digest and its references are marked blobs.

*Sweep*: untagged manifests left unmarked are deleted from the metadata; then every blob of
the content store that is not marked and older than ``grace_seconds`` (by ``Info.created_at``)
loses its links (``forget_blob``) and then its bytes, in that order, so that a crash leaves at
worst unlinked bytes for the next run. Links to blobs that are neither marked nor present are
forgotten too.

The content store is listed before the lock is taken; the mark and the sweep run under
:func:`~registry.locking.sweep_lock`, so no push is between "it exists" and "it is linked"
while they run, and a blob committed after the listing is never a candidate. Upload sessions
older than ``upload_max_age`` are purged with their bytes (ingests ``upload-<uuid>``), as are
``upload-`` ingests that have no session and are as old. A dry run takes no lock and changes
nothing; it reports what a run would do. ``registry gc`` logs each run (not a dry run) in
the audit log (:mod:`registry.gcruns`).

Before the mark, the projects' retention rules are applied (``registry retention run``, see
:mod:`registry.tagpolicy.retention`; ``--no-retention`` skips it), so that the blobs of the
manifests they remove are collected by the same run; a dry run lists what they would remove
and counts those manifests as gone.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from layerstore.content.store import Info
from layerstore.digest import Digest
from layerstore.errors import InvalidArgument, LayerstoreError, NotFound, Unavailable
from registry import gcruns
from registry.config import Settings
from registry.locking import sweep_lock, use_cluster_lock
from registry.metadata.pglocks import cluster_lock_for, single_collector
from registry.metadata.sqlite import SqliteMetadataStore
from registry.metadata.store import ManifestRecord, MetadataStore
from registry.storage.backends import storage_driver
from registry.storage.errors import StorageError
from registry.storage.filesystem import FilesystemDriver
from registry.storage.sweeping import DriverContent, FilesystemContent, Sweepable
from registry.tagpolicy.errors import TagPolicyError

CONTENT_DIR = "content"
METADATA_FILE = "metadata.db"
UPLOAD_INGEST_PREFIX = "upload-"

__all__ = ["CONTENT_DIR", "METADATA_FILE", "GCReport", "ManifestRef", "collect", "run_cli"]


@dataclass(frozen=True, order=True)
class ManifestRef:
    """A manifest of one repository."""

    repository: str
    digest: Digest

    def __str__(self) -> str:
        return f"{self.repository}@{self.digest}"


@dataclass(frozen=True)
class GCReport:
    """What a collection did (with ``dry_run``: what it would do)."""

    dry_run: bool
    manifests_deleted: tuple[ManifestRef, ...]
    blobs_deleted: tuple[Digest, ...]
    bytes_freed: int
    uploads_purged: tuple[str, ...]
    manifests_kept: int
    blobs_kept: int
    blobs_in_grace: int
    links_forgotten: int

    def summary(self) -> str:
        """A few lines for people."""
        verb = "would delete" if self.dry_run else "deleted"
        purge = "would purge" if self.dry_run else "purged"
        return "\n".join([
            f"manifests: {verb} {len(self.manifests_deleted)}, kept {self.manifests_kept}",
            f"blobs: {verb} {len(self.blobs_deleted)} ({self.bytes_freed} bytes), "
            f"kept {self.blobs_kept} ({self.blobs_in_grace} only for the grace period)",
            f"dangling links: {verb} {self.links_forgotten}",
            f"uploads: {purge} {len(self.uploads_purged)}",
        ])


@dataclass(frozen=True)
class _Mark:
    """The outcome of the mark phase."""

    blobs: frozenset[Digest]
    doomed: tuple[ManifestRef, ...]
    kept: int


def _closure(roots: Iterable[Digest], records: dict[Digest, ManifestRecord],
             referrers: dict[Digest, list[Digest]]) -> set[Digest]:
    """The manifests reachable from ``roots`` through references and referrers."""
    kept: set[Digest] = set()
    stack = [digest for digest in roots if digest in records]
    while stack:
        digest = stack.pop()
        if digest in kept:
            continue
        kept.add(digest)
        stack.extend(ref for ref in records[digest].references if ref in records)
        stack.extend(referrers.get(digest, ()))
    return kept


def _mark(meta: MetadataStore, delete_untagged: bool, cutoff: float,
          removed: frozenset[ManifestRef] = frozenset()) -> _Mark:
    """Mark every blob a kept manifest needs; list the manifests to delete. Manifests of
    ``removed`` count as gone (a dry run after a planned retention run)."""
    marked: set[Digest] = set()
    doomed: list[ManifestRef] = []
    kept_count = 0
    for repo in meta.repositories():
        records = {record.digest: record for record in meta.manifests(repo)
                   if ManifestRef(repo, record.digest) not in removed}
        referrers: dict[Digest, list[Digest]] = defaultdict(list)
        for record in records.values():
            if record.subject is not None:
                referrers[record.subject].append(record.digest)
        if delete_untagged:
            roots = {d for d in meta.tagged(repo).values() if d in records}
            roots.update(d for d, record in records.items() if record.created_at > cutoff)
        else:
            roots = set(records)
        kept = _closure(roots, records, referrers)
        kept_count += len(kept)
        for digest, record in records.items():
            if digest in kept:
                marked.add(digest)
                marked.update(record.references)
            else:
                doomed.append(ManifestRef(repo, digest))
    return _Mark(frozenset(marked), tuple(sorted(doomed)), kept_count)


def _purge_uploads(content: Sweepable, meta: MetadataStore, cutoff: float,
                   dry_run: bool) -> tuple[str, ...]:
    """End upload sessions started before ``cutoff`` and abort their ingests; abort orphaned
    upload ingests as old. An ingest a request is writing into right now is left alone."""
    purged: dict[str, None] = {}
    for upload in meta.uploads(started_before=cutoff):
        if not dry_run:
            try:
                content.abort(UPLOAD_INGEST_PREFIX + upload.uuid)
            except NotFound:
                pass
            except Unavailable:
                continue
            meta.end_upload(upload.uuid)
        purged[upload.uuid] = None
    for status in content.list_statuses():
        uuid = status.ref.removeprefix(UPLOAD_INGEST_PREFIX)
        if (uuid == status.ref or status.started_at >= cutoff or uuid in purged
                or meta.get_upload(uuid) is not None):
            continue
        if not dry_run:
            try:
                content.abort(status.ref)
            except (NotFound, Unavailable):
                continue
        purged[uuid] = None
    return tuple(purged)


def _check_seconds(value: float | None, what: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                              or not value >= 0):
        raise InvalidArgument(f"{what} must be a number of seconds >= 0, not {value!r}")


def collect(root_content: Sweepable, meta: MetadataStore, *, lock_root: Path,
            dry_run: bool = False, delete_untagged: bool = False,
            grace_seconds: float = 3600, upload_max_age: float | None = None,
            now: float | None = None,
            removed: frozenset[ManifestRef] = frozenset()) -> GCReport:
    """Collect garbage as the module docstring describes; return what was (or would be)
    removed. ``now`` (default: the current time) is what ages are measured from;
    ``removed`` are manifests a dry run treats as already gone (what a retention run
    would remove first)."""
    _check_seconds(grace_seconds, "grace_seconds")
    _check_seconds(upload_max_age, "upload_max_age")
    now = time.time() if now is None else now
    cutoff = now - grace_seconds
    uploads_purged: tuple[str, ...] = ()
    if upload_max_age is not None:
        uploads_purged = _purge_uploads(root_content, meta, now - upload_max_age, dry_run)
    listed = list(root_content.walk())
    lock: AbstractContextManager[None] = nullcontext() if dry_run else sweep_lock(lock_root)
    with lock:
        mark = _mark(meta, delete_untagged, cutoff, removed)
        if not dry_run:
            for ref in mark.doomed:
                meta.delete_manifest(ref.repository, ref.digest)
        linked = meta.linked_blobs()
        deleted, in_grace = _sweep(root_content, meta, listed, mark.blobs, linked, cutoff,
                                   dry_run)
        swept = {info.digest for info in deleted}
        dangling = sorted(d for d in linked - mark.blobs - swept if not root_content.exists(d))
        if not dry_run:
            for digest in dangling:
                meta.forget_blob(digest)
    return GCReport(
        dry_run=dry_run,
        manifests_deleted=mark.doomed,
        blobs_deleted=tuple(sorted(swept)),
        bytes_freed=sum(info.size for info in deleted),
        uploads_purged=uploads_purged,
        manifests_kept=mark.kept,
        blobs_kept=len(listed) - len(deleted),
        blobs_in_grace=in_grace,
        links_forgotten=len(dangling),
    )


def _sweep(content: Sweepable, meta: MetadataStore, listed: list[Info],
           marked: frozenset[Digest], linked: set[Digest], cutoff: float,
           dry_run: bool) -> tuple[list[Info], int]:
    """Delete the listed blobs that are unmarked and older than ``cutoff`` (their links
    first); return those and how many unmarked blobs were kept for being newer."""
    deleted: list[Info] = []
    in_grace = 0
    for listing in listed:
        if listing.digest in marked:
            continue
        try:
            info = listing if dry_run else content.info(listing.digest)
        except NotFound:
            continue
        if info.created_at > cutoff:
            in_grace += 1
            continue
        if not dry_run:
            if info.digest in linked:
                meta.forget_blob(info.digest)
            try:
                content.delete(info.digest)
            except NotFound:
                continue
        deleted.append(info)
    return deleted, in_grace


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"seconds must be >= 0, not {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="registry gc",
        description="Delete blobs and manifests nothing refers to, and stale uploads.",
    )
    parser.add_argument("--root", metavar="DIR",
                        help="storage root of the registry (default /var/lib/registry)")
    parser.add_argument("--config", metavar="FILE",
                        help="TOML settings file ($REGISTRY_CONFIG) to read the root from")
    parser.add_argument("--dry-run", action="store_true",
                        help="report what would be deleted; change nothing")
    parser.add_argument("--delete-untagged", action="store_true",
                        help="also delete manifests no tag, index or subject keeps")
    parser.add_argument("--grace", type=_seconds, default=3600.0, metavar="SECONDS",
                        help="keep anything younger than this (default: 3600)")
    parser.add_argument("--upload-max-age", type=_seconds, default=None, metavar="SECONDS",
                        help="purge upload sessions older than this (default: keep them)")
    parser.add_argument("--no-retention", dest="retention", action="store_false",
                        help="do not apply the projects' retention rules first")
    return parser


def _retention(root: Path, settings: Settings | None, meta: MetadataStore,
               dry_run: bool) -> frozenset[ManifestRef]:
    """Apply the retention rules (``registry retention run``) before collecting, printing
    what they remove; the manifests removed (or, dry, that would be)."""
    from registry.tagpolicy.commands import report_lines
    from registry.tagpolicy.service import open_tag_policy
    from registry.tagpolicy.store import DB_FILE

    if (settings is None or not settings.metadata_url) and not (root / DB_FILE).exists():
        return frozenset()
    policy = open_tag_policy(settings if settings is not None else Settings(root=root), meta)
    try:
        planned = policy.plan_retention(meta)
        if not planned.repositories:
            return frozenset()
        result = None if dry_run else policy.run_retention(meta, planned)
    finally:
        policy.close()
    for line in report_lines(planned, result):
        print(line.replace("; run 'registry gc' to free their blobs", ""))
    if not dry_run:
        return frozenset()  # removed for real (a skipped one stays and keeps its blobs)
    return frozenset(ManifestRef(r.repository, r.digest) for r in planned.removals)


def _open_metadata(root: Path, settings: Settings | None) -> MetadataStore:
    if settings is None or not settings.metadata_url:
        return SqliteMetadataStore(root / METADATA_FILE)
    from registry.metadata.postgres import PostgresMetadataStore

    return PostgresMetadataStore(settings.metadata_url, migrate=False)


def run_cli(root: Path, argv: list[str], settings: Settings | None = None) -> int:
    """``registry gc`` on the registry at ``root``: parse ``argv``, collect, print a summary;
    the exit status (0 done, 1 failed, 2 bad arguments). With ``settings`` of
    ``storage = "s3"`` the blobs are those of the bucket; with their ``metadata_url`` the
    metadata is the PostgreSQL database's, and only one collection runs at a time across
    every host (an advisory lock; a second one fails at once)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    shared = settings is not None and settings.metadata_url and settings.storage != "filesystem"
    if shared:
        root.mkdir(parents=True, exist_ok=True)  # only for the local lock file
    elif not root.is_dir():
        print(f"registry gc: no registry at {str(root)!r}", file=sys.stderr)
        return 1
    logged = settings if settings is not None else Settings(root=root)
    run = gcruns.new_run_id()
    started = time.monotonic()
    try:
        meta = _open_metadata(root, settings)
        try:
            content: Sweepable
            if settings is not None and settings.storage != "filesystem":
                content = DriverContent(storage_driver(settings), meta)
            else:
                content = FilesystemContent(FilesystemDriver(root / CONTENT_DIR), meta)
            use_cluster_lock(cluster_lock_for(meta))
            with single_collector(meta):
                if not args.dry_run:
                    gcruns.record(logged, gcruns.GC_START, f"run={run}")
                removed = (_retention(root, settings, meta, args.dry_run) if args.retention
                           else frozenset())
                report = collect(
                    content, meta, lock_root=root,
                    dry_run=args.dry_run, delete_untagged=args.delete_untagged,
                    grace_seconds=args.grace, upload_max_age=args.upload_max_age,
                    removed=removed,
                )
        finally:
            meta.close()
    except (LayerstoreError, StorageError, TagPolicyError) as err:
        if not args.dry_run:
            gcruns.record(logged, gcruns.GC_FAILED,
                          f"run={run} {str(err).splitlines()[0][:500]}")
        print(f"registry gc: {err}", file=sys.stderr)
        return 1
    if not args.dry_run:
        gcruns.record(logged, gcruns.GC_DONE, gcruns.done_detail(
            run, len(report.manifests_deleted), len(report.blobs_deleted), report.bytes_freed,
            len(report.uploads_purged), report.links_forgotten, report.blobs_kept,
            time.monotonic() - started))
    print(report.summary())
    return 0
