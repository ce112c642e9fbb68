"""Copying images between two registries over the distribution API.

:class:`Copier` copies what a tag (or digest) names from one repository of the source to
the same repository of the destination: every blob first (skipped when the destination has
it — ``HEAD`` — mounted from another repository there that this copy already filled,
uploaded otherwise), then the manifests, children before the index that lists them, the
top one under its tag last. The referrers of every copied manifest (signatures, SBOMs …)
follow, found through the referrers API or, on a registry without it, the
``sha256-<hex>`` tag of the OCI fallback scheme, which is kept up to date on a destination
without the API in the same way (:mod:`registry.client.referrers`).

Blobs go through a spool, a content store of the replicator's own: a download broken off
(by a dead connection or a killed process) resumes from what the spool holds, and a blob is
removed from the spool once the destination has it. Nothing is held whole in memory.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from layerstore.content.store import ContentStore
from layerstore.digest import Digest
from layerstore.errors import LayerstoreError
from layerstore.oci import Descriptor, Index, Manifest, MediaType
from registry.client.auth import repository_scope
from registry.client.catalog import head_manifest
from registry.client.download import download_blob
from registry.client.errors import NotFound
from registry.client.manifests import FetchedManifest, fetch_manifest, put_manifest_answer
from registry.client.parallel import Job, run_all
from registry.client.progress import EXISTS, MOUNTED
from registry.client.reference import Reference
from registry.client.referrers import list_in_fallback, list_referrers, referrer_descriptor
from registry.client.transport import Transport
from registry.client.upload import upload_blob

__all__ = ["FALLBACK_TAG", "Copier", "Tally"]

FALLBACK_TAG = re.compile(r"^sha(256|512)-[0-9a-f]{64,128}$")
"""Tags of the referrers fallback scheme: copied as referrers, not as tags."""
_SUBJECT_HEADER = "oci-subject"
_MAX_DEPTH = 8


@dataclass
class Tally:
    """What a copy did so far; ``changed`` is called (from any thread) after each step."""

    manifests: int = 0
    blobs: int = 0
    skipped: int = 0
    mounted: int = 0
    bytes: int = 0
    deleted: int = 0
    changed: Callable[[], None] = field(default=lambda: None, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        """Add to the counters and report the change."""
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)
        self.changed()


class Copier:
    """Copies images from ``source`` to ``destination`` (module docstring), counting in
    ``tally``; ``spool`` holds blobs on their way; ``concurrency`` blobs move at once."""

    def __init__(self, source: Transport, destination: Transport, spool: ContentStore,
                 tally: Tally, *, concurrency: int = 4) -> None:
        self.source = source
        self.destination = destination
        self.spool = spool
        self.tally = tally
        self.concurrency = concurrency
        self._homes: dict[str, str] = {}
        self._homes_lock = threading.Lock()
        self._done: set[tuple[str, str]] = set()

    # -- manifests -------------------------------------------------------------------------

    def copy(self, repository: str, reference: str) -> Digest:
        """Copy what ``reference`` (a tag or digest) names in ``repository``; its digest."""
        fetched = fetch_manifest(self.source, repository, reference,
                                 what=f"{repository}:{reference}")
        is_tag = not _is_digest(reference)
        self._copy_document(repository, fetched, depth=0)
        if is_tag:
            have = head_manifest(Reference(self.destination.registry, repository,
                                           tag=reference), transport=self.destination)
            if have is None or have.digest != fetched.descriptor.digest:
                self._put(repository, reference, fetched)
        return fetched.descriptor.digest

    def _copy_document(self, repository: str, fetched: FetchedManifest, depth: int) -> None:
        """Copy a fetched manifest or index with all it names, and its referrers."""
        digest = fetched.descriptor.digest
        if (repository, str(digest)) in self._done:
            return
        present = head_manifest(Reference(self.destination.registry, repository,
                                          digest=digest), transport=self.destination)
        document = fetched.document
        if isinstance(document, Index):
            # Also when the index is there: its children may have new referrers.
            for child in document.manifests:
                if child.media_type in MediaType.MANIFESTS | MediaType.INDEXES:
                    self._copy_child(repository, child, depth)
                elif present is None:
                    self._copy_blobs(repository, [child])
        elif present is None:
            assert isinstance(document, Manifest)
            self._copy_blobs(repository, [document.config, *document.layers])
        if present is None:
            self._put(repository, str(digest), fetched)
        self._done.add((repository, str(digest)))
        if depth < _MAX_DEPTH:
            for referrer in self._referrers(repository, digest):
                self._copy_child(repository, referrer, depth + 1)

    def _copy_child(self, repository: str, desc: Descriptor, depth: int) -> None:
        if (repository, str(desc.digest)) in self._done:
            return
        fetched = fetch_manifest(self.source, repository, str(desc.digest),
                                 what=f"{repository}@{desc.digest}", expected=desc)
        self._copy_document(repository, fetched, depth)

    def _put(self, repository: str, reference: str, fetched: FetchedManifest) -> None:
        what = (f"{repository}@{reference}" if _is_digest(reference)
                else f"{repository}:{reference}")
        _, headers = put_manifest_answer(self.destination, repository, reference,
                                         fetched.descriptor.media_type, fetched.raw,
                                         what=what)
        if not _is_digest(reference):
            return
        self.tally.add(manifests=1)
        subject = fetched.document.subject
        if subject is not None and _SUBJECT_HEADER not in headers:
            list_in_fallback(self.destination, repository, subject.digest,
                             referrer_descriptor(fetched.descriptor, fetched.document))

    # -- referrers ---------------------------------------------------------------------------

    def _referrers(self, repository: str, digest: Digest) -> list[Descriptor]:
        """The referrers of ``digest`` on the source: the API, else the fallback tag."""
        return list_referrers(self.source, repository, digest)

    # -- blobs ---------------------------------------------------------------------------------

    def _copy_blobs(self, repository: str, blobs: list[Descriptor]) -> None:
        unique: dict[str, Descriptor] = {}
        for desc in blobs:
            if desc.media_type in MediaType.NONDISTRIBUTABLE:
                continue
            unique.setdefault(str(desc.digest), desc)

        def job(desc: Descriptor) -> Job[None]:
            return lambda cancel: self._copy_blob(repository, desc, cancel)

        run_all([job(d) for d in unique.values()], self.concurrency)

    def _copy_blob(self, repository: str, desc: Descriptor, cancel: threading.Event) -> None:
        scopes = (repository_scope(repository, "pull", "push"),)
        head = self.destination.request(
            "HEAD", f"/v2/{repository}/blobs/{desc.digest}", what=f"blob {desc.digest}",
            scopes=scopes, ok=(200, 404))
        if head.status_code == 200:
            self._remember(desc, repository)
            self.tally.add(skipped=1)
            return
        with self._homes_lock:
            home = self._homes.get(str(desc.digest))
        if home is not None and home != repository:
            mount_scopes = (*scopes, repository_scope(home, "pull"))
            with contextlib.suppress(NotFound):
                state = upload_blob(self.destination, repository, desc, self.spool,
                                    scopes=mount_scopes, mount_from=(home,), cancel=cancel)
                if state in (EXISTS, MOUNTED):
                    self._remember(desc, repository)
                    self.tally.add(mounted=1)
                    return
        download_blob(self.source, repository, desc, self.spool, cancel=cancel)
        state = upload_blob(self.destination, repository, desc, self.spool, scopes=scopes,
                            cancel=cancel)
        self._remember(desc, repository)
        if state == EXISTS:
            self.tally.add(skipped=1)
        else:
            self.tally.add(blobs=1, bytes=desc.size)
        with contextlib.suppress(LayerstoreError, OSError):
            self.spool.delete(desc.digest)

    def _remember(self, desc: Descriptor, repository: str) -> None:
        with self._homes_lock:
            self._homes.setdefault(str(desc.digest), repository)


def _is_digest(reference: str) -> bool:
    return ":" in reference
