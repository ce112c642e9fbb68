"""Turning a built stage into a stored image: config (with history), manifest, names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from builder.solver.state import StageState
from builder.store import BuildStore
from layerstore.assembly import StoredImage, assemble_image


def export_image(store: BuildStore, state: StageState, *, created: str,
                 labels: Mapping[str, str] | None = None,
                 extra: Mapping[str, Any] | None = None) -> StoredImage:
    """Store the stage's image config (with ``extra`` top-level fields) and an OCI manifest
    for its layers."""
    if labels:
        state.labels.update(labels)
    image = state.to_image(created)
    if extra:
        image = replace(image, extra={**image.extra, **extra})
    return assemble_image(store.content, image, state.layers)


def name_image(store: BuildStore, stored: StoredImage, tags: Sequence[str]) -> None:
    """Point every tag at the image's manifest."""
    for tag in tags:
        store.images.put(tag, stored.manifest)
