"""What the tags and manifest pages show, read from the metadata store and the blob
store the ``/v2/`` handlers use: tag rows (size, pushed at, digest, platforms), a
manifest's config fields, layers with their sizes and the history line that made each,
the children of an index, and the referrers tree.

Stored content is never trusted: a manifest or config that cannot be parsed, or whose bytes
are gone, is reported on the page (``problem``) instead of failing it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from layerstore.digest import Digest
from layerstore.errors import LayerstoreError
from layerstore.oci import Image, Index, Manifest, MediaType, parse_manifest_or_index
from registry.handlers.base import Services
from registry.metadata.store import ManifestRecord
from registry.storage.errors import StorageError
from registry.storage.threads import run_blocking

REFERRER_DEPTH = 4
MAX_REFERRERS = 200
MAX_CONFIG_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class TagRow:
    """A tag as the tags page lists it; ``size``: the image's config and layers (an index:
    its manifests' own sizes), ``None`` when unknown."""

    name: str
    digest: str
    media_type: str
    kind: str
    size: int | None
    pushed: float
    platforms: tuple[str, ...] = ()
    artifact_type: str = ""


@dataclass(frozen=True)
class LayerRow:
    """A layer of an image manifest and the history line that made it."""

    index: int
    digest: str
    media_type: str
    size: int
    created_by: str = ""


@dataclass(frozen=True)
class HistoryRow:
    """One entry of the image config's history; ``layer`` is the 1-based layer it made."""

    created: str
    created_by: str
    layer: int | None
    comment: str = ""


@dataclass(frozen=True)
class ChildRow:
    """A manifest an index lists."""

    digest: str
    media_type: str
    size: int
    platform: str
    artifact_type: str = ""


@dataclass(frozen=True)
class Referrer:
    """A manifest whose subject is the one shown (signatures, SBOMs, attestations), with
    those referring to it in turn."""

    digest: str
    artifact_type: str
    media_type: str
    size: int
    created: float
    annotations: tuple[tuple[str, str], ...] = ()
    children: tuple[Referrer, ...] = ()


@dataclass(frozen=True)
class ManifestView:
    """Everything the manifest page shows."""

    repository: str
    digest: str
    media_type: str
    kind: str
    size: int
    pushed: float
    tags: tuple[str, ...]
    subject: str = ""
    artifact_type: str = ""
    platform: str = ""
    created: str = ""
    total_size: int | None = None
    fields: tuple[tuple[str, Any], ...] = ()
    layers: tuple[LayerRow, ...] = ()
    history: tuple[HistoryRow, ...] = ()
    children: tuple[ChildRow, ...] = ()
    referrers: tuple[Referrer, ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    problem: str = ""
    raw: str = field(default="", repr=False)


def kind_of(parsed: Manifest | Index | None, media_type: str) -> str:
    """``image``, ``index`` or ``artifact`` (a manifest whose config is no image config)."""
    if isinstance(parsed, Index) or media_type in MediaType.INDEXES:
        return "index"
    if isinstance(parsed, Manifest) and parsed.config.media_type not in MediaType.CONFIGS:
        return "artifact"
    if parsed is None and media_type not in MediaType.MANIFESTS:
        return "artifact"
    return "image"


def platform_text(platform: Any) -> str:
    """``os/architecture[/variant]`` of a platform, ``""`` without one."""
    if platform is None:
        return ""
    text = f"{platform.os}/{platform.architecture}"
    return f"{text}/{platform.variant}" if platform.variant else text


async def read_manifest(services: Services, record: ManifestRecord
                        ) -> tuple[Manifest | Index | None, bytes, str]:
    """The parsed manifest, its bytes, and a problem (``""`` if none)."""
    try:
        raw = await services.manifests.content(record)
    except StorageError as exc:
        return None, b"", f"the manifest's bytes cannot be read: {exc}"
    try:
        return parse_manifest_or_index(raw, f"manifest {record.digest}"), raw, ""
    except LayerstoreError as exc:
        return None, raw, str(exc)


def _artifact_type(parsed: Manifest | Index | None, record: ManifestRecord) -> str:
    if record.artifact_type and record.artifact_type not in MediaType.CONFIGS:
        return record.artifact_type
    if isinstance(parsed, Manifest) and parsed.config.media_type not in MediaType.CONFIGS:
        return parsed.config.media_type
    return ""


async def tag_row(services: Services, repository: str, tag: str, digest: Digest
                  ) -> TagRow | None:
    """The tags page's row of ``tag`` (``None`` if its manifest vanished meanwhile)."""
    record = await run_blocking(services.metadata.get_manifest, repository, digest)
    if record is None:
        return None
    parsed, _, _ = await read_manifest(services, record)
    size: int | None = None
    platforms: tuple[str, ...] = ()
    if isinstance(parsed, Manifest):
        size = parsed.config.size + sum(layer.size for layer in parsed.layers)
    elif isinstance(parsed, Index):
        size = sum(child.size for child in parsed.manifests)
        platforms = tuple(p for p in (platform_text(c.platform) for c in parsed.manifests)
                          if p and p != "unknown/unknown")
    return TagRow(tag, str(digest), record.media_type, kind_of(parsed, record.media_type),
                  size, record.created_at, platforms, _artifact_type(parsed, record))


async def _config(services: Services, repository: str, manifest: Manifest
                  ) -> tuple[Image | None, str]:
    descriptor = manifest.config
    if descriptor.media_type not in MediaType.CONFIGS:
        return None, ""
    if descriptor.size > MAX_CONFIG_BYTES:
        return None, f"the image config is too large to show ({descriptor.size} bytes)"
    seen = await run_blocking(services.blobs.size, repository, descriptor.digest)
    if seen is None:
        return None, f"the image config {descriptor.digest} is not in {repository}"
    try:
        raw = await services.blobs.read_small(descriptor.digest)
        return Image.from_json(raw, f"image config {descriptor.digest}"), ""
    except StorageError as exc:
        return None, f"the image config cannot be read: {exc}"
    except LayerstoreError as exc:
        return None, str(exc)


def config_fields(image: Image) -> tuple[tuple[str, Any], ...]:
    """The config fields the page lists, in Dockerfile terms; absent ones left out."""
    config = image.config
    rows: list[tuple[str, Any]] = [("Platform", platform_text(image.platform))]
    if image.created:
        rows.append(("Created", image.created))
    if image.author:
        rows.append(("Author", image.author))
    if config is None:
        return tuple(rows)
    values: list[tuple[str, Any]] = [
        ("Entrypoint", _argv(config.entrypoint)), ("Cmd", _argv(config.cmd)),
        ("User", config.user), ("WorkingDir", config.working_dir),
        ("Env", list(config.env) if config.env else None),
        ("ExposedPorts", sorted(config.exposed_ports) if config.exposed_ports else None),
        ("Volumes", sorted(config.volumes) if config.volumes else None),
        ("Labels", sorted(config.labels.items()) if config.labels else None),
        ("StopSignal", config.stop_signal),
        ("Shell", _argv(config.shell)),
        ("Healthcheck", _argv(config.healthcheck.test) if config.healthcheck else None),
        ("OnBuild", list(config.on_build) if config.on_build else None),
    ]
    rows.extend((name, value) for name, value in values if value)
    return tuple(rows)


def _argv(value: tuple[str, ...] | None) -> str | None:
    return json.dumps(list(value)) if value else None


def layer_rows(manifest: Manifest, image: Image | None
               ) -> tuple[tuple[LayerRow, ...], tuple[HistoryRow, ...]]:
    """The layers with the history line that made each, and the whole history."""
    history = image.history if image is not None and image.history else ()
    makers: list[str] = []
    rows: list[HistoryRow] = []
    for entry in history:
        line = entry.created_by or ""
        layer = None
        if not entry.empty_layer:
            makers.append(line)
            layer = len(makers)
        rows.append(HistoryRow(entry.created or "", line, layer, entry.comment or ""))
    layers = tuple(
        LayerRow(i + 1, str(d.digest), d.media_type, d.size,
                 makers[i] if i < len(makers) else "")
        for i, d in enumerate(manifest.layers))
    return layers, tuple(rows)


async def referrers(services: Services, repository: str, digest: Digest,
                    depth: int = REFERRER_DEPTH, budget: list[int] | None = None
                    ) -> tuple[Referrer, ...]:
    """The referrers tree of ``digest`` (at most :data:`REFERRER_DEPTH` deep and
    :data:`MAX_REFERRERS` manifests)."""
    budget = budget if budget is not None else [MAX_REFERRERS]
    if depth == 0 or budget[0] <= 0:
        return ()
    found = await run_blocking(services.metadata.referrers, repository, digest)
    out: list[Referrer] = []
    for record in found[:budget[0]]:
        budget[0] -= 1
        below = await referrers(services, repository, record.digest, depth - 1, budget)
        out.append(Referrer(str(record.digest), record.artifact_type or "",
                            record.media_type, record.size, record.created_at,
                            tuple(sorted((record.annotations or {}).items())), below))
    return tuple(out)


async def manifest_view(services: Services, repository: str, record: ManifestRecord,
                        tags: tuple[str, ...]) -> ManifestView:
    """The manifest page of ``record`` in ``repository`` (``tags``: those pointing at it)."""
    parsed, raw, problem = await read_manifest(services, record)
    base: dict[str, Any] = dict(
        repository=repository, digest=str(record.digest), media_type=record.media_type,
        kind=kind_of(parsed, record.media_type), size=record.size, pushed=record.created_at,
        tags=tags, subject=str(record.subject) if record.subject else "",
        artifact_type=_artifact_type(parsed, record),
        referrers=await referrers(services, repository, record.digest),
        raw=raw.decode("utf-8", "replace") if len(raw) < 256 * 1024 else "")
    if parsed is None:
        return ManifestView(**base, problem=problem)
    base["annotations"] = tuple(sorted((parsed.annotations or {}).items()))
    if isinstance(parsed, Index):
        children = tuple(ChildRow(str(c.digest), c.media_type, c.size,
                                  platform_text(c.platform), c.artifact_type or "")
                         for c in parsed.manifests)
        return ManifestView(**base, children=children,
                            total_size=sum(c.size for c in parsed.manifests))
    image, problem = await _config(services, repository, parsed)
    layers, history = layer_rows(parsed, image)
    total = parsed.config.size + sum(layer.size for layer in parsed.layers)
    return ManifestView(
        **base, layers=layers, history=history, total_size=total, problem=problem,
        fields=config_fields(image) if image is not None else (),
        platform=platform_text(image.platform) if image is not None else "",
        created=image.created or "" if image is not None else "")
