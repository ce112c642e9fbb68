"""Walking an image graph: index → manifests → config and layers (and subjects)."""

from __future__ import annotations

from collections.abc import Iterator

from layerstore.content.store import ContentStore
from layerstore.digest import Digest
from layerstore.errors import InvalidArgument
from layerstore.oci import Descriptor, Index, Manifest, MediaType, parse_manifest_or_index

MAX_MANIFEST_SIZE = 4 << 20


def read_small(store: ContentStore, desc: Descriptor) -> bytes:
    """Read a manifest or config blob (at most 4 MiB), checking size and digest."""
    if desc.size > MAX_MANIFEST_SIZE:
        raise InvalidArgument(f"{desc.media_type} {desc.digest} is {desc.size} bytes (max 4 MiB)")
    with store.reader(desc.digest) as f:
        raw = f.read(MAX_MANIFEST_SIZE + 1)
    actual = Digest.from_bytes(raw, desc.digest.algorithm)
    if actual != desc.digest or len(raw) != desc.size:
        raise InvalidArgument(f"blob {desc.digest} does not match its descriptor "
                              f"(got {actual}, {len(raw)} bytes)")
    return raw


def load_manifest(store: ContentStore, desc: Descriptor) -> Manifest | Index:
    """Parse the manifest or index that ``desc`` points to."""
    return parse_manifest_or_index(read_small(store, desc), f"{desc.media_type} {desc.digest}")


def children(store: ContentStore, desc: Descriptor) -> list[Descriptor]:
    """The descriptors a manifest or index refers to (none for other blobs)."""
    if desc.media_type not in MediaType.MANIFESTS | MediaType.INDEXES:
        return []
    doc = load_manifest(store, desc)
    if isinstance(doc, Index):
        return list(doc.manifests)
    return [doc.config, *doc.layers]


def reachable(store: ContentStore, root: Descriptor, *, skip_missing_nondist: bool = True,
              skip_missing: bool = False) -> Iterator[Descriptor]:
    """Every descriptor reachable from ``root`` (root first, each digest once).

    Non-distributable layers that are absent locally are passed over when
    ``skip_missing_nondist`` is set, as they may legitimately live only at their ``urls``;
    with ``skip_missing`` every descriptor absent locally is (and what it would reach).
    """
    seen: set[str] = set()
    stack = [root]
    while stack:
        desc = stack.pop()
        key = str(desc.digest)
        if key in seen:
            continue
        seen.add(key)
        if ((skip_missing or (skip_missing_nondist
                              and desc.media_type in MediaType.NONDISTRIBUTABLE))
                and not store.exists(desc.digest)):
            continue
        yield desc
        stack.extend(reversed(children(store, desc)))
