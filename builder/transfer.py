"""The builder's use of the registry client: pulling base images, pushing results, and
reporting blob transfers on the progress display."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from builder.buildcontexts import OCI_LAYOUT
from builder.errors import BuildError
from builder.progress import Vertex
from builder.solver.images import ImageNotFound, LocalImages
from builder.store import BuildStore
from layerstore.assembly import StoredImage, load_image
from layerstore.oci import Descriptor, Manifest, Platform
from layerstore.walk import read_small
from registry.client.errors import ClientError, InvalidReference, NotFound
from registry.client.progress import BlobProgress
from registry.client.reference import Reference, parse_reference
from registry.client.settings import ClientSettings

if TYPE_CHECKING:  # the cache modules are imported when a cache is used
    from builder.remotecache import CacheSource, CacheSpec, RegistryCache
    from registry.client.transport import Transport


def local_name(ref: Reference) -> str | None:
    """The name a pulled image gets in the local store (None for a digest-only ref)."""
    return f"{ref.familiar_name()}:{ref.tag}" if ref.tag else None


def reporter(vertex: Vertex | None) -> Callable[[BlobProgress], None]:
    """A transfer callback that logs each blob's end to ``vertex``."""
    def report(event: BlobProgress) -> None:
        if vertex is not None and event.finished:
            vertex.log(f"{event.digest.hex[:12]}: {event.state} ({event.total} bytes)\n"
                       .encode())
    return report


class PullingImages:
    """Image resolution for builds: the local store first, then the registry (always the
    registry with ``always=True``, as ``--pull``). Each reference is resolved once per
    build, however many stages name it."""

    def __init__(self, store: BuildStore, settings: ClientSettings,
                 vertex_for: Callable[[str], Vertex] | None = None,
                 always: bool = False) -> None:
        self.store = store
        self.settings = settings
        self.vertex_for = vertex_for
        self.always = always
        self._local = LocalImages(store)
        self._lock = threading.Lock()
        self._done: dict[tuple[str, str], StoredImage] = {}
        self._platforms: dict[tuple[str, str], Platform] = {}
        self.pulled: list[str] = []

    def resolve(self, ref: str, platform: Platform) -> StoredImage:
        """See :class:`~builder.solver.images.ImageResolver`."""
        if ref.startswith(OCI_LAYOUT):
            from builder.solver.images import layout_image

            return layout_image(self.store, ref, platform)
        try:
            reference = parse_reference(ref)
        except InvalidReference as exc:
            raise ImageNotFound(str(exc)) from None
        key = (str(reference), f"{platform.os}/{platform.architecture}")
        with self._lock:
            if key in self._done:
                return self._done[key]
            image = self._resolve(reference, platform)
            self._done[key] = image
            self._platforms[key] = platform
            return image

    def resolved(self) -> list[tuple[str, Platform, StoredImage]]:
        """Every reference resolved so far, with the platform asked for and the image."""
        with self._lock:
            return [(key[0], self._platforms[key], image) for key, image in self._done.items()]

    def _resolve(self, reference: Reference, platform: Platform) -> StoredImage:
        name = local_name(reference)
        if not self.always:
            try:
                return self._local.resolve(str(reference.digest) if reference.digest and
                                           not name else (name or str(reference)), platform)
            except ImageNotFound:
                pass
        from registry.client.pull import pull

        vertex = self.vertex_for(f"[internal] pull {reference}") if self.vertex_for else None
        try:
            pulled = pull(reference, self.store.content, platform, self.settings,
                          progress=reporter(vertex))
        except ClientError as exc:
            if vertex is not None:
                vertex.error(str(exc))
            raise ImageNotFound(str(exc)) from None
        if name is not None:
            self.store.images.put(name, pulled.target)
        self.pulled.append(str(reference))
        if vertex is not None:
            vertex.done()
        return load_image(self.store.content, pulled.manifest)


def push_image(store: BuildStore, manifest: Descriptor, name: str, settings: ClientSettings,
               vertex: Vertex | None = None, mount_from: tuple[str, ...] = (),
               transport: Transport | None = None) -> str:
    """Push a stored image to the registry ``name`` names; return the pushed digest.
    ``mount_from``: repositories (``registry/repo`` names) whose blobs the registry may link
    instead of receiving them again; those on another registry are passed over.
    ``transport``: an open one to that registry, to reuse."""
    from registry.client.push import push

    try:
        reference = parse_reference(name)
        same = tuple(parse_reference(m).repository for m in mount_from
                     if parse_reference(m).registry == reference.registry)
        digest = push(store.content, manifest, reference, settings, mount_from=same,
                      progress=reporter(vertex), transport=transport)
    except ClientError as exc:
        raise BuildError(f"push {name}: {exc}") from None
    return str(digest)


def open_registry_cache(store: BuildStore, ref_text: str, settings: ClientSettings,
                        warn: Callable[[str], None]) -> RegistryCache | None:
    """``--cache-from type=registry,ref=R``: read the cache manifest and config (layers are
    fetched when used). A cache that is not there yet is a warning, as with buildx."""
    from registry.client.download import download_blob
    from registry.client.manifests import fetch_manifest
    from registry.client.transport import open_transport

    try:
        ref = parse_reference(ref_text)
        transport = open_transport(ref.registry, settings)
    except ClientError as exc:
        raise BuildError(f"--cache-from {ref_text}: {exc}") from None
    try:
        fetched = fetch_manifest(transport, ref.repository, ref.manifest_reference,
                                 what=str(ref))
        manifest = fetched.document
        if not isinstance(manifest, Manifest):
            raise BuildError(f"--cache-from {ref_text}: {ref} is an index, not a pybuild "
                             "build cache or an image with an inline cache")
        download_blob(transport, ref.repository, manifest.config, store.content)
        raw = read_small(store.content, manifest.config)
        from builder.remotecache import CACHE_CONFIG_TYPE, inline_document

        if manifest.config.media_type != CACHE_CONFIG_TYPE:
            raw = inline_document(raw, f"--cache-from {ref_text}")
    except NotFound:
        transport.close()
        warn(f"--cache-from {ref_text}: no cache there yet")
        return None
    except ClientError as exc:
        transport.close()
        raise BuildError(f"--cache-from {ref_text}: {exc}") from None

    def fetch(desc: Descriptor) -> None:
        try:
            download_blob(transport, ref.repository, desc, store.content)
        except ClientError as exc:
            raise BuildError(f"--cache-from {ref_text}: {exc}") from None

    from builder.remotecache import RegistryCache

    return RegistryCache(str(ref), manifest, raw, fetch, close=transport.close)


class RegistryAccess:
    """Everything a build does with registries: base images, cache import and export,
    pushes. ``vertex_for`` makes progress vertices; ``warn`` reports what does not stop the
    build."""

    def __init__(self, store: BuildStore, settings: ClientSettings, *,
                 vertex_for: Callable[[str], Vertex] | None = None,
                 warn: Callable[[str], None] = lambda _: None, always_pull: bool = False
                 ) -> None:
        self.store = store
        self.settings = settings
        self.vertex_for = vertex_for
        self.warn = warn
        self.images = PullingImages(store, settings, vertex_for, always_pull)
        self._warm: dict[str, tuple[threading.Thread, list[Transport]]] = {}

    def warm_up_push(self, names: Sequence[str]) -> None:
        """Open a connection to the registries ``names`` will be pushed to, on threads of
        their own while the build runs: the first contact (the push client's modules, the
        ``/v2/`` probe, a TLS attempt before plain HTTP on an insecure registry) is then
        done when the image is. A failure here is left for the push to meet and report."""
        for name in names:
            try:
                registry = parse_reference(name).registry
            except ClientError:
                continue  # the push reports the bad name
            if registry in self._warm:
                continue
            opened: list[Transport] = []

            def contact(registry: str = registry, opened: list[Transport] = opened) -> None:
                from registry.client.transport import Transport

                with contextlib.suppress(Exception):
                    transport = Transport(registry, self.settings)
                    opened.append(transport)
                    transport.probe()

            thread = threading.Thread(target=contact, name=f"contact {registry}", daemon=True)
            self._warm[registry] = (thread, opened)
            thread.start()

    def _warm_transport(self, name: str) -> Transport | None:
        """The connection :meth:`warm_up_push` opened to ``name``'s registry, when its first
        contact is over (else the push opens its own)."""
        try:
            warm = self._warm.get(parse_reference(name).registry)
        except ClientError:
            return None
        if warm is None or warm[0].is_alive() or not warm[1]:
            return None
        return warm[1][0]

    def close(self) -> None:
        """Close the connections :meth:`warm_up_push` opened (one still making its first
        contact is left to end with the process, which need not wait for it)."""
        for thread, opened in self._warm.values():
            if not thread.is_alive():
                for transport in opened:
                    transport.close()
        self._warm.clear()

    def open_cache(self, spec: CacheSpec) -> CacheSource | None:
        """A ``--cache-from`` source (None when a registry cache is not there yet)."""
        if spec.type == "local":
            path = Path(spec.path or ".")
            if not (path / "index.json").exists():
                self.warn(f"--cache-from type=local,src={path}: no cache there yet")
                return None
            from builder.remotecache import LayoutCache

            return LayoutCache(path)
        return open_registry_cache(self.store, spec.ref or "", self.settings, self.warn)

    def save_cache(self, spec: CacheSpec, manifest: Descriptor) -> None:
        """Carry out one ``--cache-to``."""
        if spec.type == "local":
            from builder.remotecache import export_local

            export_local(self.store, manifest, Path(spec.path or "."))
            return
        vertex = self.vertex_for(f"exporting cache to {spec.ref}") if self.vertex_for else None
        push_image(self.store, manifest, spec.ref or "", self.settings, vertex)
        if vertex is not None:
            vertex.done()

    def push(self, image: StoredImage, name: str) -> str:
        """Push a built image (blobs of the images it was built from are mounted)."""
        vertex = self.vertex_for(f"pushing {name}") if self.vertex_for else None
        digest = push_image(self.store, image.manifest, name, self.settings, vertex,
                            tuple(self.images.pulled), self._warm_transport(name))
        if vertex is not None:
            vertex.done()
        return digest
