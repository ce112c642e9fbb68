"""Sharing the build cache between machines: ``--cache-to`` and ``--cache-from``.

A cache export is an OCI manifest whose config (media type :data:`CACHE_CONFIG_TYPE`) lists
the steps of a build by cache key — each with the full layer stack its stage had after it,
as indexes into the manifest's ``layers``, and its history timestamp — and whose layers are
those layer blobs. With ``cache-mounts=true`` it also lists the contents of the build's
``RUN --mount=type=cache`` directories by id, each one more layer (see
:mod:`builder.cachemounts`). ``type=local`` writes it into an OCI image layout directory,
``type=registry`` pushes it as ``ref``. An importer reads only the manifest and config; a
layer blob is fetched when a step that needs it is found.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from builder.errors import BuildError
from builder.store import BuildStore
from layerstore.content.copy import copy_blob, put_bytes
from layerstore.content.local import LocalStore
from layerstore.digest import Digest
from layerstore.errors import LayerstoreError
from layerstore.layerblob import Layer
from layerstore.layout import LayoutEntry, entries, write_layout
from layerstore.oci import Descriptor, Manifest, MediaType, describe
from layerstore.walk import load_manifest, read_small

CACHE_CONFIG_TYPE = "application/vnd.pybuild.buildcache.config.v1+json"
#: The image-config key holding an inline cache (``--cache-to type=inline``).
INLINE_KEY = "pybuild.buildcache.v1"
CACHE_ARTIFACT_TYPE = "application/vnd.pybuild.buildcache.v1"
LAYOUT_TAG = "cache"


@dataclass(frozen=True)
class CachedStep:
    """One step as exported: its key, the stage's layers after it, when it was made."""

    key: str
    layers: tuple[Layer, ...]
    created: str
    empty: bool
    stage: int = 0


@dataclass(frozen=True)
class CachedMount:
    """The contents of one cache mount as exported: its id, the layer holding them and
    their size unpacked."""

    id: str
    layer: Layer
    size: int


#: What ``cache-mounts-max-size`` is unless given: a cache mount larger than this is not
#: exported.
DEFAULT_MOUNT_LIMIT = 2 * 1024**3


@dataclass(frozen=True)
class CacheSpec:
    """One ``--cache-to`` / ``--cache-from`` value. ``cache_mounts`` (export only) also
    exports the cache mounts of the build, each at most ``mount_limit`` bytes unpacked."""

    type: str
    ref: str | None = None
    path: str | None = None
    mode: str = "min"
    attrs: Mapping[str, str] = field(default_factory=dict)
    cache_mounts: bool = False
    mount_limit: int = DEFAULT_MOUNT_LIMIT


def parse_cache_spec(text: str, *, export: bool) -> CacheSpec:
    """Parse ``type=registry,ref=R[,mode=min|max]``, ``type=local,dest=DIR`` (export) or
    ``src=DIR`` (import), ``type=inline``; a bare value is a registry ref."""
    flag = "--cache-to" if export else "--cache-from"
    if "=" not in text:
        return CacheSpec("registry", ref=text)
    attrs: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if not eq:
            raise BuildError(f"{flag} {text!r}: {part!r} is not key=value")
        attrs[key.strip().lower()] = value.strip()
    kind = attrs.pop("type", "registry")
    mode = attrs.pop("mode", "min")
    if mode not in ("min", "max"):
        raise BuildError(f"{flag} {text!r}: mode must be min or max")
    mounts = _mount_attrs(attrs, f"{flag} {text!r}", export and kind in ("registry", "local"))
    if kind == "registry":
        ref = attrs.pop("ref", None)
        if not ref:
            raise BuildError(f"{flag} {text!r}: type=registry needs ref=REPOSITORY:TAG")
        return CacheSpec(kind, ref=ref, mode=mode, attrs=attrs, cache_mounts=mounts[0],
                         mount_limit=mounts[1])
    if kind == "local":
        path = attrs.pop("dest" if export else "src", None)
        if not path:
            raise BuildError(f"{flag} {text!r}: type=local needs "
                             f"{'dest' if export else 'src'}=DIR")
        return CacheSpec(kind, path=path, mode=mode, attrs=attrs, cache_mounts=mounts[0],
                         mount_limit=mounts[1])
    if kind == "inline":
        if not export:
            raise BuildError(f"{flag} {text!r}: read an inline cache with "
                             "type=registry,ref=IMAGE")
        return CacheSpec(kind, mode="min", attrs=attrs)
    raise BuildError(f"{flag} {text!r}: unknown type {kind!r} (registry, local)")


def _mount_attrs(attrs: dict[str, str], where: str, allowed: bool) -> tuple[bool, int]:
    """``cache-mounts=true|false`` and ``cache-mounts-max-size=SIZE`` (export to a registry
    or a directory only)."""
    wanted = attrs.pop("cache-mounts", None)
    limit_text = attrs.pop("cache-mounts-max-size", None)
    if wanted is None and limit_text is None:
        return False, DEFAULT_MOUNT_LIMIT
    if not allowed:
        raise BuildError(f"{where}: cache-mounts and cache-mounts-max-size belong to "
                         "--cache-to type=registry or type=local")
    if wanted is not None and wanted.lower() not in ("true", "false", "1", "0"):
        raise BuildError(f"{where}: cache-mounts={wanted!r} must be true or false")
    limit = DEFAULT_MOUNT_LIMIT
    if limit_text is not None:
        from builder.limits import parse_size

        limit = parse_size(limit_text, f"{where}: cache-mounts-max-size")
    return (wanted or "false").lower() in ("true", "1"), limit


class StepLog:
    """The steps one build went through, hits and misses alike (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: dict[str, CachedStep] = {}
        self._stages: dict[str, set[int]] = {}

    def add(self, step: CachedStep) -> None:
        """Remember a step (a step several stages share is kept once, for all of them)."""
        with self._lock:
            self._steps.setdefault(step.key, step)
            self._stages.setdefault(step.key, set()).add(step.stage)

    def steps(self, stages: set[int] | None = None) -> list[CachedStep]:
        """The steps of ``stages`` (all when None), in the order they were taken."""
        with self._lock:
            return [s for s in self._steps.values()
                    if stages is None or self._stages[s.key] & stages]


def _cache_document(steps: Sequence[CachedStep], mounts: Sequence[CachedMount] = ()
                    ) -> tuple[dict[str, Any], list[Layer]]:
    """The cache config for ``steps`` (and cache ``mounts``) and the distinct layers it
    indexes into."""
    layers: dict[str, tuple[int, Layer]] = {}
    for layer in [x for step in steps for x in step.layers] + [m.layer for m in mounts]:
        layers.setdefault(str(layer.descriptor.digest), (len(layers), layer))
    config: dict[str, Any] = {
        "layers": [{"digest": str(layer.descriptor.digest), "diff_id": str(layer.diff_id)}
                   for _, layer in layers.values()],
        "steps": [{"key": s.key, "created": s.created, "empty": s.empty,
                   "layers": [layers[str(x.descriptor.digest)][0] for x in s.layers]}
                  for s in steps],
    }
    if mounts:
        config["mounts"] = [{"id": m.id, "size": m.size,
                             "layer": layers[str(m.layer.descriptor.digest)][0]}
                            for m in mounts]
    return config, [layer for _, layer in layers.values()]


def inline_cache(steps: Sequence[CachedStep], image_layers: Sequence[Layer]) -> dict[str, Any]:
    """``--cache-to type=inline``: the steps whose layer stacks the image itself carries, as
    a document for its config (:data:`INLINE_KEY`)."""
    final = [str(x.descriptor.digest) for x in image_layers]
    kept = [s for s in steps
            if [str(x.descriptor.digest) for x in s.layers] == final[:len(s.layers)]]
    return _cache_document(kept)[0]


def cache_manifest(store: BuildStore, steps: Sequence[CachedStep],
                   mounts: Sequence[CachedMount] = ()) -> Descriptor:
    """Store the cache config and manifest for ``steps`` (and cache ``mounts``); return the
    manifest descriptor."""
    config, ordered = _cache_document(steps, mounts)
    raw = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    put_bytes(store.content, raw)
    manifest = Manifest(config=describe(CACHE_CONFIG_TYPE, raw),
                        layers=tuple(layer.descriptor for layer in ordered),
                        media_type=MediaType.OCI_MANIFEST, artifact_type=CACHE_ARTIFACT_TYPE)
    body = manifest.to_json()
    put_bytes(store.content, body)
    return describe(MediaType.OCI_MANIFEST, body)


def parse_cache_config(raw: bytes, where: str) -> dict[str, CachedStep]:
    """The steps of a cache config blob, by key."""
    try:
        doc: Any = json.loads(raw)
        layers = [Layer(Descriptor(media_type=MediaType.OCI_LAYER_GZIP,
                                   digest=Digest.parse(x["digest"]), size=0),
                        Digest.parse(x["diff_id"]), 0) for x in doc["layers"]]
        return {s["key"]: CachedStep(s["key"], tuple(layers[i] for i in s["layers"]),
                                     s["created"], bool(s["empty"]))
                for s in doc["steps"]}
    except (ValueError, KeyError, TypeError, IndexError, LayerstoreError) as exc:
        raise BuildError(f"{where}: not a pybuild build cache ({exc})") from None


def parse_cache_mounts(raw: bytes, manifest: Manifest, where: str) -> dict[str, CachedMount]:
    """The cache mounts a cache config blob lists, by id, with the manifest's descriptors."""
    try:
        doc: Any = json.loads(raw)
        layers = [Digest.parse(x["digest"]) for x in doc["layers"]]
        diff_ids = [Digest.parse(x["diff_id"]) for x in doc["layers"]]
        by_digest = {str(d.digest): d for d in manifest.layers}
        return {m["id"]: CachedMount(m["id"], Layer(by_digest[str(layers[m["layer"]])],
                                                    diff_ids[m["layer"]], 0), int(m["size"]))
                for m in doc.get("mounts", [])}
    except (ValueError, KeyError, TypeError, IndexError, LayerstoreError) as exc:
        raise BuildError(f"{where}: not a pybuild build cache ({exc})") from None


def inline_document(config: bytes, where: str) -> bytes:
    """The cache document an image config carries under :data:`INLINE_KEY`."""
    try:
        doc = json.loads(config)
        inline = doc[INLINE_KEY]
    except (ValueError, KeyError, TypeError):
        raise BuildError(f"{where}: the image carries no inline cache (build it with "
                         "--cache-to type=inline)") from None
    return json.dumps(inline).encode()


def _with_manifest_layers(steps: dict[str, CachedStep], manifest: Manifest
                          ) -> dict[str, CachedStep]:
    """Put the manifest's real layer descriptors (media type and size) into the steps."""
    by_digest = {str(d.digest): d for d in manifest.layers}
    out = {}
    for key, step in steps.items():
        layers = tuple(Layer(by_digest.get(str(x.descriptor.digest), x.descriptor), x.diff_id,
                             0) for x in step.layers)
        out[key] = CachedStep(key, layers, step.created, step.empty, step.stage)
    return out


class CacheSource(Protocol):
    """Somewhere imported cache steps come from."""

    def lookup(self, key: str) -> CachedStep | None:
        """The step with ``key``, if the source has it."""
        ...

    def fetch(self, store: BuildStore, layers: Sequence[Layer]) -> None:
        """Make sure the blobs of ``layers`` are in ``store``."""
        ...

    def mount(self, cache_id: str) -> CachedMount | None:
        """The exported contents of cache mount ``cache_id``, if the source has them."""
        ...

    def close(self) -> None:
        """Release what the source holds open."""
        ...


class LayoutCache:
    """``--cache-from type=local,src=DIR``: a cache export in an OCI layout directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tmp = tempfile.TemporaryDirectory(prefix="pybuild-cache-")
        try:
            self._blobs = LocalStore(path, ingest_root=self._tmp.name)
            found = [e for e in entries(path)
                     if e.descriptor.media_type == MediaType.OCI_MANIFEST]
            manifests = [load_manifest(self._blobs, e.descriptor) for e in found]
        except (LayerstoreError, OSError) as exc:
            raise BuildError(f"--cache-from {path}: cannot read the cache ({exc})") from None
        self.steps: dict[str, CachedStep] = {}
        self.mounts: dict[str, CachedMount] = {}
        for manifest in manifests:
            if isinstance(manifest, Manifest) and manifest.config.media_type == \
                    CACHE_CONFIG_TYPE:
                raw = read_small(self._blobs, manifest.config)
                self.steps.update(_with_manifest_layers(
                    parse_cache_config(raw, f"--cache-from {path}"), manifest))
                self.mounts.update(parse_cache_mounts(raw, manifest, f"--cache-from {path}"))

    def lookup(self, key: str) -> CachedStep | None:
        """See :class:`CacheSource`."""
        return self.steps.get(key)

    def mount(self, cache_id: str) -> CachedMount | None:
        """See :class:`CacheSource`."""
        return self.mounts.get(cache_id)

    def fetch(self, store: BuildStore, layers: Sequence[Layer]) -> None:
        """See :class:`CacheSource`."""
        for layer in layers:
            if not store.content.exists(layer.descriptor.digest):
                copy_blob(self._blobs, store.content, layer.descriptor)

    def close(self) -> None:
        """See :class:`CacheSource`."""
        self._tmp.cleanup()


class RegistryCache:
    """``--cache-from type=registry,ref=R``: a cache export pushed to a registry. The
    manifest and config are read at once; blobs are fetched with ``fetch_blob`` on demand."""

    def __init__(self, ref: str, manifest: Manifest, config: bytes,
                 fetch_blob: Callable[[Descriptor], None],
                 close: Callable[[], None] | None = None) -> None:
        self.ref = ref
        self.close = close or (lambda: None)
        self.steps = _with_manifest_layers(parse_cache_config(config, f"--cache-from {ref}"),
                                           manifest)
        self.mounts = parse_cache_mounts(config, manifest, f"--cache-from {ref}")
        self._fetch_blob = fetch_blob

    def lookup(self, key: str) -> CachedStep | None:
        """See :class:`CacheSource`."""
        return self.steps.get(key)

    def mount(self, cache_id: str) -> CachedMount | None:
        """See :class:`CacheSource`."""
        return self.mounts.get(cache_id)

    def fetch(self, store: BuildStore, layers: Sequence[Layer]) -> None:
        """See :class:`CacheSource`."""
        for layer in layers:
            if not store.content.exists(layer.descriptor.digest):
                self._fetch_blob(layer.descriptor)


def export_local(store: BuildStore, manifest: Descriptor, dest: Path) -> None:
    """``--cache-to type=local,dest=DIR``."""
    try:
        write_layout(dest, store.content, [LayoutEntry(LAYOUT_TAG, manifest)])
    except (LayerstoreError, OSError) as exc:
        raise BuildError(f"--cache-to {dest}: cannot write the cache ({exc})") from None
