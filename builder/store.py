"""The builder's local state: blobs, snapshots, image names and cache-mount directories.

Layout under the store root (``--root``, ``$PYBUILD_ROOT``, default ``/var/lib/pybuild``;
``$XDG_DATA_HOME/pybuild`` for a rootless user, see :mod:`builder.rootless`)::

    content/      layerstore content store (layer blobs, configs, manifests)
    snapshots/    overlay snapshotter; a committed layer stack is named by its chainID
    images.db     image names → manifest descriptors
    cache.db      the build cache: step cache keys → snapshots and layers
    cache-mounts/ directories of ``RUN --mount=type=cache``
    tmp/          scratch space for one build (mount points, downloads)
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

from layerstore.digest import Digest, chain_ids
from layerstore.errors import DigestMismatch, InvalidArgument, NotFound

if TYPE_CHECKING:
    from builder.solver.cache import BuildCache
    from layerstore.content.local import LocalStore
    from layerstore.images import ImageStore
    from layerstore.oci import Descriptor
    from layerstore.snapshots.overlay import OverlaySnapshotter

DEFAULT_ROOT = "/var/lib/pybuild"
T = TypeVar("T")


def default_root() -> Path:
    """The store root: ``$PYBUILD_ROOT``, else ``/var/lib/pybuild`` for root and
    ``$XDG_DATA_HOME/pybuild`` (``~/.local/share/pybuild``) for a rootless user."""
    from builder import rootless

    explicit = os.environ.get("PYBUILD_ROOT")
    if explicit:
        return Path(explicit)
    return Path(DEFAULT_ROOT) if rootless.running_as_root() else rootless.data_home()


class BuildStore:
    """The stores under one root; close with :meth:`close` or use as a context manager.

    Each store (and the modules behind it) is opened on first use: a fully cached rebuild
    reads the content store, the image names and the snapshot table, never the build cache.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._made: dict[str, object] = {}

    @classmethod
    def open(cls, root: Path | None = None) -> BuildStore:
        """Open (creating if needed) the store at ``root`` (default :func:`default_root`)."""
        root = Path(os.path.abspath(root or default_root()))
        root.mkdir(parents=True, exist_ok=True)
        for sub in ("cache-mounts", "tmp"):
            (root / sub).mkdir(exist_ok=True)
        return cls(root)

    @cached_property
    def content(self) -> LocalStore:
        """Layer blobs, configs and manifests."""
        from layerstore.content.local import LocalStore

        return self._once("content", lambda: LocalStore(self.root / "content"))

    @cached_property
    def snapshots(self) -> OverlaySnapshotter:
        """The overlay snapshotter; a committed layer stack is named by its chainID."""
        from layerstore.snapshots.overlay import OverlaySnapshotter

        return self._once("snapshots", lambda: OverlaySnapshotter(self.root / "snapshots"))

    @cached_property
    def images(self) -> ImageStore:
        """Image names → manifest descriptors."""
        from layerstore.images import ImageStore

        return self._once("images", lambda: ImageStore(self.root / "images.db"))

    @cached_property
    def cache(self) -> BuildCache:
        """The build cache: step cache keys → snapshots and layers."""
        from builder.solver.cache import BuildCache

        return self._once("cache", lambda: BuildCache(self.root / "cache.db"))

    def _once(self, name: str, make: Callable[[], T]) -> T:
        """``make()`` at most once per store, though several threads ask at the same time."""
        with self._lock:
            made = self._made.get(name)
            if made is None:
                made = self._made[name] = make()
            return cast(T, made)

    def __enter__(self) -> BuildStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the databases that were opened."""
        for name in ("snapshots", "images", "cache"):
            close = getattr(self._made.get(name), "close", None)
            if close is not None:
                close()

    @property
    def cache_mounts(self) -> Path:
        """Directory of the persistent ``RUN --mount=type=cache`` directories."""
        return self.root / "cache-mounts"

    @property
    def tmp(self) -> Path:
        """Scratch directory on the store's filesystem."""
        return self.root / "tmp"


LAYER_DIGEST = "pybuild.layer.digest"
LAYER_DIFF_ID = "pybuild.layer.diff_id"
LAYER_SIZE = "pybuild.layer.size"
LAYER_MEDIA_TYPE = "pybuild.layer.media_type"

_unpack_lock = threading.Lock()


def snapshot_exists(store: BuildStore, name: str) -> bool:
    """True when a committed snapshot ``name`` exists."""
    try:
        store.snapshots.stat(name)
    except NotFound:
        return False
    return True


def temp_key(prefix: str = "active") -> str:
    """A unique key for an active snapshot or view."""
    return f"{prefix}-{uuid.uuid4().hex}"


def unpack_layers(store: BuildStore, layers: Sequence[Descriptor],
                  diff_ids: Sequence[Digest]) -> str | None:
    """Make sure a committed snapshot exists for every prefix of the layer stack; return the
    name (chainID) of the top one, or None for no layers.

    Layers already unpacked (by any image sharing the prefix) are not touched again; each
    missing one is extracted straight into a new snapshot's upperdir in overlay form and
    committed under its chainID.
    """
    chains = [str(c) for c in chain_ids(diff_ids)]
    if len(chains) != len(layers):
        raise InvalidArgument(f"image has {len(layers)} layers but {len(diff_ids)} diff_ids")
    parent: str | None = None
    for layer, diff_id, chain in zip(layers, diff_ids, chains, strict=True):
        if not snapshot_exists(store, chain):
            with _unpack_lock:
                if not snapshot_exists(store, chain):
                    _unpack_one(store, layer, diff_id, chain, parent)
        parent = chain
    return parent


def _unpack_one(store: BuildStore, layer: Descriptor, diff_id: Digest, chain: str,
                parent: str | None) -> None:
    from layerstore.diff import apply_layer
    from layerstore.snapshots.session import snapshot_session

    with snapshot_session(store.snapshots, temp_key("unpack"), parent) as session:
        got = apply_layer(store.content, layer, session.upperdir, overlay=True)
        if got != diff_id:
            raise DigestMismatch(f"layer {layer.digest}: uncompressed content hashes to {got}, "
                                 f"the image config says {diff_id}")
        session.commit(chain, layer_labels(layer, diff_id), exist_ok=True)


def layer_labels(layer: Descriptor, diff_id: Digest) -> dict[str, str]:
    """Snapshot labels that remember which layer blob a committed snapshot came from."""
    return {LAYER_DIGEST: str(layer.digest), LAYER_DIFF_ID: str(diff_id),
            LAYER_SIZE: str(layer.size), LAYER_MEDIA_TYPE: layer.media_type}


@contextmanager
def view_of(store: BuildStore, chain: str | None) -> Iterator[Path]:
    """Mount a read-only view of committed snapshot ``chain`` (an empty tree for None) and
    yield its root; the view is unmounted and removed afterwards."""
    from layerstore.snapshots.session import mounted_snapshot

    with mounted_snapshot(store.snapshots, temp_key("view"), chain, readonly=True) as root:
        yield root
