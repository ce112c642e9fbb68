"""Pulling an image: resolve the reference (an index for the wanted platform), then fetch
the config and layers in parallel into a content store, each verified, and store the
manifests last, so that a manifest is only ever stored with everything it names.

For Docker Hub images the configured mirrors are tried first, in order; a mirror serves
``docker.io/library/debian`` at ``MIRROR/v2/library/debian/…``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from layerstore.assembly import host_architecture
from layerstore.content.copy import put_bytes
from layerstore.content.store import ContentStore
from layerstore.digest import Digest
from layerstore.oci import Descriptor, Index, Manifest, MediaType, Platform
from registry.client.credentials import CredentialSource
from registry.client.download import download_blob
from registry.client.errors import ClientError, PlatformNotFound, ProtocolError
from registry.client.manifests import FetchedManifest, fetch_manifest, select_platform
from registry.client.parallel import Job, run_all
from registry.client.progress import ProgressCallback
from registry.client.reference import Reference, parse_reference
from registry.client.settings import ClientSettings
from registry.client.transport import Transport, mirror_registry


@dataclass(frozen=True)
class Pulled:
    """What a pull stored: ``target`` is what the reference resolved to (an index or a
    manifest), ``manifest`` the image manifest for the platform (``parsed``) with its
    ``config``; ``index`` is the index when the reference named one; ``source`` is the
    URL the image came from (a mirror or the registry); ``attestations`` are the index's
    attestation manifests about the image, stored with it."""

    reference: Reference
    target: Descriptor
    manifest: Descriptor
    parsed: Manifest
    config: Descriptor
    index: Descriptor | None
    source: str
    attestations: tuple[Descriptor, ...] = ()


def default_platform() -> Platform:
    """linux on this machine's architecture."""
    return Platform(architecture=host_architecture(), os="linux")


def _unique(descriptors: list[Descriptor]) -> list[Descriptor]:
    seen: set[str] = set()
    out = []
    for desc in descriptors:
        if str(desc.digest) not in seen:
            seen.add(str(desc.digest))
            out.append(desc)
    return out


#: The annotations BuildKit marks an index's attestation manifests with.
REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"


def attestations_of(index: Index, image: Descriptor) -> list[Descriptor]:
    """The entries of ``index`` that are attestation manifests about ``image``."""
    return [m for m in index.manifests
            if (m.annotations or {}).get(REFERENCE_TYPE) == "attestation-manifest"
            and (m.annotations or {}).get(REFERENCE_DIGEST) == str(image.digest)
            and m.media_type in MediaType.MANIFESTS]


def _entry(index: Index, platform: Platform, ref: Reference, digest: Digest,
           all_platforms: bool) -> Descriptor:
    """The index entry for ``platform`` (with ``all_platforms``, the first image when the
    index has none for it)."""
    try:
        return select_platform(index, platform, what=str(ref), digest=digest)
    except PlatformNotFound:
        images = [m for m in index.manifests if m.media_type in MediaType.MANIFESTS
                  and (m.annotations or {}).get(REFERENCE_TYPE) is None]
        if not all_platforms or not images:
            raise
        return images[0]


def pull_from(transport: Transport, ref: Reference, store: ContentStore, platform: Platform,
              *, progress: ProgressCallback | None = None,
              all_platforms: bool = False) -> Pulled:
    """Pull ``ref`` through one transport (no mirrors); ``all_platforms``: every image
    manifest (and attestation manifest) of an index, not only the platform's."""
    repository = ref.repository
    top = fetch_manifest(transport, repository, ref.manifest_reference, what=str(ref))
    image: FetchedManifest = top
    index = None
    attached: list[FetchedManifest] = []
    others: list[FetchedManifest] = []
    if isinstance(top.document, Index):
        index = top.descriptor
        entry = _entry(top.document, platform, ref, top.descriptor.digest, all_platforms)
        image = fetch_manifest(transport, repository, str(entry.digest),
                               what=f"{ref.name}@{entry.digest}", expected=entry)
        if not isinstance(image.document, Manifest):
            raise ProtocolError(f"{ref} on registry {transport.registry}: the index entry "
                                f"for {platform} is itself an index ({entry.digest})",
                                registry=transport.registry)
        image = replace(image, descriptor=replace(image.descriptor, platform=entry.platform))
        for about in attestations_of(top.document, entry):
            fetched = fetch_manifest(transport, repository, str(about.digest),
                                     what=f"{ref.name}@{about.digest}", expected=about)
            if isinstance(fetched.document, Manifest):
                attached.append(fetched)
        if all_platforms:
            done = {str(entry.digest), *(str(a.descriptor.digest) for a in attached)}
            for child in top.document.manifests:
                if child.media_type in MediaType.MANIFESTS and str(child.digest) not in done:
                    done.add(str(child.digest))
                    others.append(fetch_manifest(transport, repository, str(child.digest),
                                                 what=f"{ref.name}@{child.digest}",
                                                 expected=child))
    manifest = image.document
    assert isinstance(manifest, Manifest)
    blobs = _unique([manifest.config, *manifest.layers,
                     *(d for a in (*attached, *others) if isinstance(a.document, Manifest)
                       for d in (a.document.config, *a.document.layers))])
    workers = transport.settings.max_concurrency

    def job(desc: Descriptor) -> Job[bool]:
        return lambda cancel: download_blob(transport, repository, desc, store,
                                            progress=progress, cancel=cancel)

    run_all([job(desc) for desc in blobs], workers)
    put_bytes(store, image.raw, image.descriptor.digest)
    for fetched in (*attached, *others):
        put_bytes(store, fetched.raw, fetched.descriptor.digest)
    if index is not None:
        put_bytes(store, top.raw, index.digest)
    return Pulled(ref, top.descriptor if index is not None else image.descriptor,
                  image.descriptor, manifest, manifest.config, index, transport.base_url,
                  tuple(f.descriptor for f in attached))


def pull(ref: Reference | str, store: ContentStore, platform: Platform | None = None,
         settings: ClientSettings | None = None, *, progress: ProgressCallback | None = None,
         credentials: CredentialSource | None = None,
         transport: Transport | None = None, all_platforms: bool = False) -> Pulled:
    """Pull ``ref`` (a Reference or docker-style text) into ``store`` for ``platform``
    (default: linux on this machine's architecture). Docker Hub images come from
    ``settings.mirrors`` first. ``transport`` reuses an open connection to the registry
    (then no mirror is tried). Raises ClientError subclasses: NotFound,
    PlatformNotFound, Unauthorized, DigestMismatch, Unreachable, ProtocolError.
    ``all_platforms`` also stores every other image of an index (see :func:`pull_from`)."""
    ref = parse_reference(ref) if isinstance(ref, str) else ref
    settings = settings or (transport.settings if transport is not None else ClientSettings())
    platform = platform or default_platform()
    if transport is not None:
        return pull_from(transport, ref, store, platform, progress=progress,
                         all_platforms=all_platforms)
    failures: list[str] = []
    mirrors = settings.mirrors if ref.is_docker_hub else ()
    for mirror in mirrors:
        with Transport(mirror_registry(mirror), settings, credentials=credentials,
                       url=mirror) as mirror_transport:
            try:
                return pull_from(mirror_transport, ref, store, platform, progress=progress,
                                 all_platforms=all_platforms)
            except ClientError as exc:
                failures.append(f"{mirror}: {exc}")
    with Transport(ref.registry, settings, credentials=credentials) as own:
        try:
            return pull_from(own, ref, store, platform, progress=progress,
                             all_platforms=all_platforms)
        except ClientError as exc:
            if failures:
                exc.message += " (mirrors tried first: " + "; ".join(failures) + ")"
            raise


__all__ = ["Pulled", "attestations_of", "default_platform", "pull", "pull_from"]
