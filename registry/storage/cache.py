"""A per-process memory cache of small immutable content (manifests, small blobs)."""

from __future__ import annotations

from collections import OrderedDict

from layerstore.digest import Digest


class ContentCache:
    """A size-bounded LRU of small immutable blobs (manifests) keyed by digest."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._size = 0
        self._items: OrderedDict[Digest, bytes] = OrderedDict()

    def get(self, digest: Digest) -> bytes | None:
        """The cached bytes of ``digest``, if any."""
        data = self._items.get(digest)
        if data is not None:
            self._items.move_to_end(digest)
        return data

    def put(self, digest: Digest, data: bytes) -> None:
        """Remember ``data`` (skipped when larger than a quarter of the budget)."""
        if len(data) > self._max // 4 or digest in self._items:
            return
        self._items[digest] = data
        self._size += len(data)
        while self._size > self._max and self._items:
            _, old = self._items.popitem(last=False)
            self._size -= len(old)
