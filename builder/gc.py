"""Builder garbage collection: what a prune removes, and removing it.

Pruning is planned first (:func:`plan`) and carried out afterwards (:func:`execute`). What
stays is decided from *roots*: the blobs every named image reaches and the chainIDs of every
prefix of their layer stacks (:func:`image_roots`), plus what the build cache's records
point at (:func:`cache_roots`) and the images containers were made from
(:func:`container_roots`; a container's active snapshot keeps its parents); the cache
itself shrinks with :func:`shrink_cache`. A new kind of root extends :class:`Roots`;
everything else follows from it. Snapshots mounted in this mount namespace (read from
:mod:`layerstore.mountinfo`) always stay.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from builder.errors import BuildError
from builder.store import BuildStore
from layerstore.assembly import load_image
from layerstore.digest import Digest, chain_ids
from layerstore.errors import FailedPrecondition, LayerstoreError, NotFound, Unavailable
from layerstore.mountinfo import mountinfo
from layerstore.oci import MediaType
from layerstore.snapshots.snapshotter import Kind, SnapshotInfo
from layerstore.walk import reachable

__all__ = ["TEMPORARY_PREFIXES", "Outcome", "Plan", "Removed", "Roots", "auto_prune",
           "cache_roots", "container_roots", "execute", "image_roots", "plan", "prune",
           "shrink_cache"]

#: Key prefixes of the short-lived snapshots that builds and runs make (``temp_key``).
TEMPORARY_PREFIXES = ("active-", "view-", "unpack-")


@dataclass(frozen=True)
class Roots:
    """What must stay: blob digests and committed snapshot names (chainIDs)."""

    blobs: frozenset[str] = frozenset()
    snapshots: frozenset[str] = frozenset()

    def __or__(self, other: Roots) -> Roots:
        return Roots(self.blobs | other.blobs, self.snapshots | other.snapshots)


@dataclass(frozen=True)
class Plan:
    """What a prune removes: snapshots (children before parents), blobs and open ingests."""

    snapshots: tuple[str, ...] = ()
    blobs: tuple[Digest, ...] = ()
    ingests: tuple[str, ...] = ()


@dataclass(frozen=True)
class Removed:
    """One thing a prune removed and the bytes that freed."""

    kind: str
    name: str
    size: int


@dataclass(frozen=True)
class Outcome:
    """Everything a prune removed."""

    removed: tuple[Removed, ...] = ()

    @property
    def reclaimed(self) -> int:
        """Bytes freed in total."""
        return sum(r.size for r in self.removed)


def image_roots(store: BuildStore) -> Roots:
    """The blobs and snapshots the named images need.

    A blob that is missing locally (another platform of an index, say) is passed over; a
    manifest that cannot be parsed stops the prune, since what it needs is unknown.
    """
    blobs: set[str] = set()
    snapshots: set[str] = set()
    for record in store.images.list():
        try:
            for desc in reachable(store.content, record.target, skip_missing=True):
                blobs.add(str(desc.digest))
                if desc.media_type in MediaType.MANIFESTS:
                    diff_ids = load_image(store.content, desc).image.rootfs.diff_ids
                    snapshots.update(str(c) for c in chain_ids(diff_ids))
        except LayerstoreError as exc:
            raise BuildError(f"cannot tell what image {record.name} needs ({exc}); nothing "
                             f"was removed (remove the name with 'pybuild rmi {record.name}' "
                             "to prune without it)") from None
    return Roots(frozenset(blobs), frozenset(snapshots))


def cache_roots(store: BuildStore) -> Roots:
    """The snapshots and layer blobs the build cache's records point at."""
    blobs: set[str] = set()
    snapshots: set[str] = set()
    for record in store.cache.records():
        if record.layer is not None and record.chain is not None:
            blobs.add(str(record.layer.descriptor.digest))
            snapshots.add(record.chain)
    return Roots(frozenset(blobs), frozenset(snapshots))


def container_roots(store: BuildStore) -> Roots:
    """The blobs of the images that containers were made from (``commit`` needs them)."""
    from builder.containerstore import ContainerStore

    blobs: set[str] = set()
    for manifest in ContainerStore(store).manifests():
        with contextlib.suppress(LayerstoreError):
            blobs.update(str(d.digest) for d in reachable(store.content, manifest,
                                                          skip_missing=True))
    return Roots(frozenset(blobs), frozenset())


def shrink_cache(store: BuildStore, keep: int) -> int:
    """Forget least recently used cache records until their layers add up to at most
    ``keep`` bytes; return how many were forgotten."""
    records = store.cache.records()
    total = sum(r.size for r in records)
    dropped = 0
    for record in records:
        if total <= keep:
            break
        store.cache.delete(record.key)
        total -= record.size
        dropped += 1
    return dropped


def plan(store: BuildStore, *, blobs: bool, grace: float = 0.0, now: float | None = None,
         extra_roots: Roots = Roots()) -> Plan:
    """What to remove; ``blobs`` adds the content blobs no named image reaches. Nothing
    changed after ``now - grace`` is planned, and ``extra_roots`` stay besides what the
    named images need."""
    cutoff = (time.time() if now is None else now) - grace
    roots = image_roots(store) | extra_roots
    snaps = {s.name: s for s in store.snapshots.walk()}
    busy = _mounted(store, list(snaps))
    keep = {name for name, s in snaps.items()
            if not _removable(s, roots, busy) or max(s.created_at, s.updated_at) > cutoff}
    for name in list(keep):
        parent = snaps[name].parent
        while parent is not None and parent not in keep and parent in snaps:
            keep.add(parent)
            parent = snaps[parent].parent
    doomed = sorted((n for n in snaps if n not in keep), key=lambda n: -_depth(snaps, n))
    stale_blobs: list[Digest] = []
    if blobs:
        stale_blobs = sorted(i.digest for i in store.content.walk()
                             if str(i.digest) not in roots.blobs and i.created_at <= cutoff)
    ingests = [s.ref for s in store.content.list_statuses() if s.updated_at <= cutoff]
    return Plan(tuple(doomed), tuple(stale_blobs), tuple(ingests))


def _removable(snap: SnapshotInfo, roots: Roots, busy: set[str]) -> bool:
    if snap.name in busy:
        return False
    if snap.kind is Kind.COMMITTED:
        return snap.name not in roots.snapshots
    return snap.name.startswith(TEMPORARY_PREFIXES)


def _depth(snaps: dict[str, SnapshotInfo], name: str) -> int:
    depth = 0
    parent = snaps[name].parent
    while parent is not None and parent in snaps:
        depth += 1
        parent = snaps[parent].parent
    return depth


_T = TypeVar("_T")


def _removing(kind: str, items: Iterable[_T], size: Callable[[_T], int],
              remove: Callable[[_T], object],
              skip: tuple[type[LayerstoreError], ...]) -> Iterator[Removed]:
    """Measure and remove each of ``items``, yielding what was removed; one that is gone or
    in use again (an error in ``skip``) is left alone."""
    for item in items:
        try:
            freed = size(item)
            remove(item)
        except skip:
            continue
        yield Removed(kind, str(item), freed)


def execute(store: BuildStore, todo: Plan) -> Outcome:
    """Carry out ``todo``; whatever changed meanwhile (a snapshot that gained a child, an
    ingest taken up again) is left alone."""
    removed = [
        *_removing("snapshot", todo.snapshots, lambda name: store.snapshots.usage(name).size,
                   store.snapshots.remove, (NotFound, FailedPrecondition)),
        *_removing("blob", todo.blobs, lambda digest: store.content.info(digest).size,
                   store.content.delete, (NotFound,)),
        *_removing("ingest", todo.ingests, lambda ref: store.content.status(ref).offset,
                   store.content.abort, (NotFound, Unavailable)),
    ]
    if todo.blobs:
        from builder.buildkey import forget_missing

        forget_missing(store)
    return Outcome(tuple(removed))


def _mounted(store: BuildStore, keys: list[str]) -> set[str]:
    """The snapshots among ``keys`` that are mounted in this mount namespace: an overlay
    with the snapshot's directory as upperdir, or a bind mount of it (an active snapshot
    without parent, or a view of one layer)."""
    if not keys:
        return set()
    uppers: set[str] = set()
    roots: set[tuple[int, int]] = set()
    dev = os.stat(store.snapshots.root).st_dev
    device = f"{os.major(dev)}:{os.minor(dev)}"
    for mi in mountinfo():
        upperdir = mi.super_option("upperdir") if mi.fstype == "overlay" else None
        if upperdir is not None:
            uppers.add(upperdir)
        elif mi.device == device:
            try:
                st = os.stat(mi.mount_point)
            except OSError:
                continue
            roots.add((st.st_dev, st.st_ino))
    busy = set()
    for key in keys:
        try:
            upper = store.snapshots.upperdir(key)
            st = os.stat(upper)
        except (NotFound, OSError):
            continue
        if str(upper) in uppers or (st.st_dev, st.st_ino) in roots:
            busy.add(key)
    return busy


def prune(store: BuildStore, *, everything: bool = False, keep_storage: int | None = None,
          grace: float = 0.0) -> Outcome:
    """One prune: with ``everything`` empty the build cache and remove every blob no named
    image reaches; else shrink the cache to ``keep_storage`` bytes (when given) and remove
    the snapshots and abandoned ingests nothing needs. Anything younger than ``grace``
    seconds stays."""
    if grace < 0:
        raise BuildError(f"--grace must be 0 or more seconds, got {grace:g}")
    if everything:
        store.cache.clear()
    elif keep_storage is not None:
        shrink_cache(store, keep_storage)
    return execute(store, plan(store, blobs=everything, grace=grace,
                               extra_roots=cache_roots(store) | container_roots(store)))


def auto_prune(store: BuildStore, limit: int, grace: float) -> Outcome | None:
    """After a build: when the cache's layers exceed ``limit`` bytes, shrink it to ``limit``
    and remove what is no longer needed (blobs too); None when nothing had to be done."""
    if store.cache.total_size() <= limit:
        return None
    shrink_cache(store, limit)
    return execute(store, plan(store, blobs=True, grace=grace,
                               extra_roots=cache_roots(store) | container_roots(store)))
