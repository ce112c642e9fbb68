"""Pushing an image or an index from a content store to a registry.

Every blob the manifests name (configs and layers of every image of an index) is made
present first, in parallel: skipped when the registry has it, mounted from another
repository of the same registry when ``mount_from`` names one that has it, uploaded
otherwise. Then the manifests go up, children before the index that lists them, and the
top one under the tag (or its digest). A push that failed half way can simply be run again:
what already arrived is found by ``HEAD`` and skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

from layerstore.content.store import ContentStore
from layerstore.digest import Digest
from layerstore.errors import LayerstoreError
from layerstore.oci import Descriptor, Index, Manifest, MediaType, parse_manifest_or_index
from layerstore.walk import load_manifest, read_small
from registry.client.auth import merge_scopes, repository_scope
from registry.client.catalog import head_manifest
from registry.client.credentials import CredentialSource
from registry.client.errors import ClientError, DigestMismatch, NotFound
from registry.client.manifests import put_manifest_answer
from registry.client.parallel import Job, run_all
from registry.client.progress import ProgressCallback
from registry.client.reference import Reference, parse_reference
from registry.client.referrers import list_in_fallback, referrer_descriptor
from registry.client.settings import ClientSettings
from registry.client.transport import Transport
from registry.client.upload import upload_blob


def _source_repositories(ref: Reference, mount_from: Sequence[str]) -> tuple[str, ...]:
    """Repository names to mount from: names of ``ref``'s registry, given bare
    (``team/base``) or as references on it (``HOST:PORT/team/base:1``)."""
    out: list[str] = []
    prefix = ref.registry + "/"
    for entry in mount_from:
        name = entry.removeprefix(prefix).split("@", 1)[0]
        head, _, last = name.rpartition("/")
        name = f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]
        if name and name != ref.repository and name not in out:
            out.append(name)
    return tuple(out)


class _Plan:
    """What a push has to send: blobs (unique) and manifests, children first."""

    def __init__(self) -> None:
        self.blobs: dict[str, Descriptor] = {}
        self.manifests: list[tuple[Descriptor, bytes]] = []
        self.remote_children: list[Descriptor] = []

    def add_blob(self, store: ContentStore, desc: Descriptor) -> None:
        """Plan ``desc`` (a non-distributable layer only when it is stored locally)."""
        if desc.media_type in MediaType.NONDISTRIBUTABLE and not store.exists(desc.digest):
            return
        self.blobs.setdefault(str(desc.digest), desc)


def _plan(store: ContentStore, top: Descriptor) -> _Plan:
    plan = _Plan()
    seen: set[str] = set()

    def visit(desc: Descriptor) -> None:
        if str(desc.digest) in seen:
            return
        seen.add(str(desc.digest))
        try:
            raw = read_small(store, desc)
            document = load_manifest(store, desc)
        except LayerstoreError as exc:
            raise NotFound(f"cannot push {desc.media_type} {desc.digest}: {exc}") from None
        if isinstance(document, Index):
            for child in document.manifests:
                if child.media_type in MediaType.MANIFESTS | MediaType.INDEXES:
                    if store.exists(child.digest):
                        visit(child)
                    else:
                        plan.remote_children.append(child)
                else:
                    plan.add_blob(store, child)
        else:
            assert isinstance(document, Manifest)
            plan.add_blob(store, document.config)
            for layer in document.layers:
                plan.add_blob(store, layer)
        plan.manifests.append((desc, raw))

    visit(top)
    return plan


def push_with(transport: Transport, store: ContentStore, manifest: Descriptor,
              ref: Reference, *, mount_from: Sequence[str] = (),
              progress: ProgressCallback | None = None) -> Digest:
    """Push through an open transport (see :func:`push`)."""
    if manifest.media_type not in MediaType.MANIFESTS | MediaType.INDEXES:
        raise ClientError(f"cannot push {manifest.digest}: {manifest.media_type} is not a "
                          "manifest or index")
    if ref.digest is not None and ref.digest != manifest.digest:
        raise DigestMismatch(f"cannot push {manifest.digest} as {ref}: the reference names "
                             "another digest", registry=ref.registry,
                             digest=str(manifest.digest), repository=ref.repository)
    repository = ref.repository
    sources = _source_repositories(ref, mount_from)
    scopes = merge_scopes([repository_scope(repository, "pull", "push")],
                          [repository_scope(s, "pull") for s in sources])
    plan = _plan(store, manifest)
    for child in plan.remote_children:
        if head_manifest(ref.with_digest(child.digest),
                         transport=transport) is None:
            raise NotFound(f"index {manifest.digest} lists {child.digest}, which is neither "
                           f"in the local store nor in {ref.name} on the registry",
                           registry=ref.registry)
    blobs = list(plan.blobs.values())

    def job(desc: Descriptor) -> Job[str]:
        return lambda cancel: upload_blob(transport, repository, desc, store, scopes=scopes,
                                          mount_from=sources, progress=progress, cancel=cancel)

    run_all([job(desc) for desc in blobs], transport.settings.max_concurrency)
    *children, (top, raw) = plan.manifests
    for desc, child_raw in children:
        _put(transport, repository, str(desc.digest), desc, child_raw,
             f"{ref.name}@{desc.digest}")
    if ref.tag is not None:
        reference, what = ref.tag, f"{ref.name}:{ref.tag}"
    else:
        reference, what = str(top.digest), f"{ref.name}@{top.digest}"
    _put(transport, repository, reference, top, raw, what)
    return top.digest


def _put(transport: Transport, repository: str, reference: str, desc: Descriptor,
         raw: bytes, what: str) -> None:
    """PUT one manifest; one with a ``subject`` is also listed in the fallback referrers
    list when the registry does not answer that it tracks referrers itself."""
    _, headers = put_manifest_answer(transport, repository, reference, desc.media_type, raw,
                                     what=what)
    if b'"subject"' not in raw or "oci-subject" in headers:
        return
    document = parse_manifest_or_index(raw, what)
    if document.subject is not None:
        list_in_fallback(transport, repository, document.subject.digest,
                         referrer_descriptor(desc, document))


def push(store: ContentStore, manifest: Descriptor, ref: Reference | str,
         settings: ClientSettings | None = None, *, mount_from: Sequence[str] = (),
         progress: ProgressCallback | None = None,
         credentials: CredentialSource | None = None,
         transport: Transport | None = None) -> Digest:
    """Push the manifest or index ``manifest`` (with everything it names, read from
    ``store``) to ``ref``; return the pushed manifest's digest. ``ref`` names the tag (a
    reference with only a digest pushes by digest). ``mount_from`` lists repositories of the
    same registry to mount blobs from. ``transport`` reuses an open connection."""
    ref = parse_reference(ref, default_tag=None) if isinstance(ref, str) else ref
    if ref.tag is None and ref.digest is None:
        ref = ref.with_digest(manifest.digest)
    if transport is not None:
        return push_with(transport, store, manifest, ref, mount_from=mount_from,
                         progress=progress)
    with Transport(ref.registry, settings, credentials=credentials) as own:
        return push_with(own, store, manifest, ref, mount_from=mount_from, progress=progress)



__all__ = ["push", "push_with"]
