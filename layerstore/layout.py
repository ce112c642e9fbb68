"""The OCI image layout: ``oci-layout``, ``index.json`` and ``blobs/<alg>/<hex>``.

:func:`write_layout` exports images from a content store into a layout directory (adding to
one that exists, replacing entries of the same ref name, as skopeo does);
:func:`write_layout_archive` streams the same as one tar (``oci-archive:``);
:func:`read_layout` imports a layout's images into a content store, verifying every blob.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from layerstore.archive.writer import RECORD_SIZE, TarWriter
from layerstore.content.copy import copy_blob
from layerstore.content.local import LocalStore
from layerstore.content.store import ContentStore
from layerstore.errors import InvalidArgument, NotFound
from layerstore.fsutil import atomic_write
from layerstore.oci import Descriptor, Index, MediaType
from layerstore.walk import reachable

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_VERSION = "1.0.0"
#: The annotation containerd, BuildKit and docker put the full image name in.
IMAGE_NAME_ANNOTATION = "io.containerd.image.name"


@dataclass(frozen=True)
class LayoutEntry:
    """One image of a layout's ``index.json``: its ref name (if any) and descriptor."""

    ref_name: str | None
    descriptor: Descriptor


def _layout_store(path: Path, ingest_root: Path) -> LocalStore:
    return LocalStore(path, ingest_root=ingest_root)


def read_index(path: Path) -> Index:
    """Parse and check a layout's ``oci-layout`` and ``index.json``."""
    marker = path / "oci-layout"
    try:
        version = json.loads(marker.read_bytes()).get("imageLayoutVersion")
    except FileNotFoundError:
        raise NotFound(f"{path} is not an OCI image layout: no oci-layout file") from None
    except (ValueError, AttributeError) as exc:
        raise InvalidArgument(f"{marker}: not a valid layout marker: {exc}") from None
    if version != LAYOUT_VERSION:
        raise InvalidArgument(f"{marker}: unsupported imageLayoutVersion {version!r}")
    try:
        raw = (path / "index.json").read_bytes()
    except FileNotFoundError:
        raise InvalidArgument(f"{path} is not an OCI image layout: no index.json") from None
    return Index.from_json(raw, f"{path / 'index.json'}")


def entries(path: Path) -> list[LayoutEntry]:
    """The images listed in a layout's ``index.json``."""
    return [LayoutEntry((d.annotations or {}).get(REF_NAME), d) for d in read_index(path).manifests]


def write_layout(path: Path, store: ContentStore, images: Sequence[LayoutEntry]) -> None:
    """Export ``images`` (with every blob they reach) from ``store`` into the layout at ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    existing: list[Descriptor] = []
    if (path / "index.json").exists():
        existing = list(read_index(path).manifests)
    with tempfile.TemporaryDirectory(prefix=".ingest-", dir=path.parent) as tmp:
        dst = _layout_store(path, Path(tmp))
        for entry in images:
            for desc in reachable(store, entry.descriptor):
                copy_blob(store, dst, desc)
    names = {e.ref_name for e in images if e.ref_name}
    kept = [d for d in existing if (d.annotations or {}).get(REF_NAME) not in names]
    added = [_index_entry(entry, (REF_NAME,)) for entry in images]
    index = Index(manifests=(*kept, *added), media_type=MediaType.OCI_INDEX)
    atomic_write(path / "oci-layout", json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode())
    atomic_write(path / "index.json", index.to_json())


def _index_entry(entry: LayoutEntry, name_keys: Sequence[str]) -> Descriptor:
    """The index's descriptor of ``entry``, its name (if it has one) annotated under each of
    ``name_keys``."""
    annotations = dict(entry.descriptor.annotations or {})
    if entry.ref_name:
        annotations.update(dict.fromkeys(name_keys, entry.ref_name))
    return Descriptor(
        media_type=entry.descriptor.media_type, digest=entry.descriptor.digest,
        size=entry.descriptor.size, annotations=annotations or None,
        platform=entry.descriptor.platform)


def read_layout(path: Path, store: ContentStore, ref_name: str | None = None) -> list[LayoutEntry]:
    """Import the layout's images (or only ``ref_name``) into ``store``; return them."""
    wanted = entries(path)
    if ref_name is not None:
        wanted = [e for e in wanted if e.ref_name == ref_name]
        if not wanted:
            raise NotFound(f"{path}: no image with ref name {ref_name!r}")
    with tempfile.TemporaryDirectory(prefix="pybuild-layout-") as tmp:
        src = _layout_store(path, Path(tmp))
        for entry in wanted:
            for desc in reachable(src, entry.descriptor):
                copy_blob(src, store, desc)
    return wanted


def write_layout_archive(dest: BinaryIO, store: ContentStore,
                         images: Sequence[LayoutEntry]) -> None:
    """Stream an OCI image layout holding ``images`` (and every blob they reach) as a tar.

    Each named entry is annotated with its name as ``org.opencontainers.image.ref.name`` and
    ``io.containerd.image.name``. Blobs are read from the store as they are written.
    """
    blobs: dict[str, Descriptor] = {}
    for entry in images:
        for desc in reachable(store, entry.descriptor):
            blobs.setdefault(str(desc.digest), desc)
    manifests = [_index_entry(entry, (REF_NAME, IMAGE_NAME_ANNOTATION)) for entry in images]
    index = Index(manifests=tuple(manifests), media_type=MediaType.OCI_INDEX)
    tar = TarWriter(dest.write)
    tar.add_data(b"oci-layout", f'{{"imageLayoutVersion":"{LAYOUT_VERSION}"}}'.encode())
    tar.add_data(b"index.json", index.to_json())
    tar.add_directory(b"blobs")
    for algorithm in sorted({d.digest.algorithm for d in blobs.values()}):
        tar.add_directory(f"blobs/{algorithm}".encode())
    for key in sorted(blobs):
        digest = blobs[key].digest
        with store.reader(digest) as blob:
            tar.add_data(f"blobs/{digest.algorithm}/{digest.hex}".encode(), blob,
                         os.fstat(blob.fileno()).st_size)
    tar.close(record_size=RECORD_SIZE)
