"""Turning a built stage into a stored image: config (with history), manifest, names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from builder.solver.results import StageResult
from builder.store import BuildStore
from layerstore.assembly import StoredImage, assemble_image
from layerstore.oci import Descriptor


def export_image(store: BuildStore, result: StageResult, *, created: str,
                 labels: Mapping[str, str] | None = None,
                 extra: Mapping[str, Any] | None = None,
                 annotations: Mapping[str, str] | None = None) -> StoredImage:
    """Store the stage's image config (``labels`` added to its labels, ``extra`` top-level
    fields added) and an OCI manifest for its layers, with ``annotations``."""
    image = result.image(created)
    if labels and image.config is not None:
        merged = {**(image.config.labels or {}), **labels}
        image = replace(image, config=replace(image.config, labels=dict(sorted(merged.items()))))
    if extra:
        image = replace(image, extra={**image.extra, **extra})
    return assemble_image(store.content, image, result.layers,
                          annotations=dict(sorted(annotations.items())) if annotations else None)


def name_image(store: BuildStore, stored: StoredImage, tags: Sequence[str],
               index: Descriptor | None = None) -> None:
    """Point every tag at the image's manifest (at ``index`` when one holds the image and
    its attestations)."""
    for tag in tags:
        store.images.put(tag, index or stored.manifest)
