"""Images for registry tests, made locally with layerstore and written as OCI layouts."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from layerstore.assembly import StoredImage, assemble_image, history_entry, host_architecture
from layerstore.content.copy import put_bytes
from layerstore.content.local import LocalStore
from layerstore.diff import write_tree
from layerstore.layout import LayoutEntry, write_layout
from layerstore.oci import Descriptor, Image, ImageConfig, Index, MediaType, Platform, describe

GREETING = "hello from the registry tests"


def busybox_image(store: LocalStore, rootfs: Path, *, extra: dict[str, bytes] | None = None,
                  architecture: str | None = None, workdir: Path | None = None) -> StoredImage:
    """busybox as one layer, plus an optional second layer holding ``extra`` files."""
    layers = [write_tree(rootfs, store, "gzip", source_date_epoch=0)]
    history = [history_entry("busybox rootfs", created="2024-01-01T00:00:00Z")]
    if extra:
        assert workdir is not None
        workdir.mkdir(parents=True, exist_ok=True)
        tree = Path(tempfile.mkdtemp(prefix="extra-", dir=workdir))
        for name, data in extra.items():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            (tree / name).write_bytes(data)
        layers.append(write_tree(tree, store, "gzip", source_date_epoch=0))
        history.append(history_entry("extra files", created="2024-01-01T00:00:00Z"))
    image = Image(architecture=architecture or host_architecture(), os="linux",
                  created="2024-01-01T00:00:00Z",
                  config=ImageConfig(env=("PATH=/usr/sbin:/usr/bin:/sbin:/bin",),
                                     cmd=("sh", "-c", f"echo {GREETING}")),
                  history=tuple(history))
    return assemble_image(store, image, layers)


def multiarch_index(store: LocalStore, images: dict[str, StoredImage]) -> Descriptor:
    """An OCI index over images keyed by architecture; returns its descriptor."""
    manifests = tuple(
        replace(img.manifest, platform=Platform(architecture=arch, os="linux"))
        for arch, img in images.items()
    )
    raw = Index(manifests=manifests).to_json()
    put_bytes(store, raw)
    return describe(MediaType.OCI_INDEX, raw)


def layout_of(dest: Path, store: LocalStore, entries: dict[str, Descriptor]) -> Path:
    """Write descriptors (by ref name) from ``store`` into an OCI layout at ``dest``."""
    write_layout(dest, store, [LayoutEntry(name, desc) for name, desc in entries.items()])
    return dest
