"""Progress reports of blob transfers.

A callback receives one :class:`BlobProgress` when a blob starts, as its bytes move and
when it ends. Transfers run in parallel, so the callback is called from worker threads; it
must be quick and thread-safe, and an exception it raises aborts the transfer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from layerstore.digest import Digest

#: The blob is already where it should be (local store on pull, registry on push).
EXISTS = "exists"
#: Bytes are moving.
DOWNLOADING = "downloading"
UPLOADING = "uploading"
#: The blob is complete and verified at the destination.
DOWNLOADED = "downloaded"
PUSHED = "pushed"
#: The registry linked the blob from another repository: no bytes moved.
MOUNTED = "mounted"


@dataclass(frozen=True)
class BlobProgress:
    """Where one blob transfer stands: ``done`` of ``total`` bytes, in ``state``."""

    digest: Digest
    media_type: str
    done: int
    total: int
    state: str

    @property
    def finished(self) -> bool:
        """Whether this is the blob's last report."""
        return self.state in (EXISTS, DOWNLOADED, PUSHED, MOUNTED)


ProgressCallback = Callable[[BlobProgress], None]


def report(callback: ProgressCallback | None, event: BlobProgress) -> None:
    """Pass ``event`` to ``callback`` when there is one."""
    if callback is not None:
        callback(event)


__all__ = ["DOWNLOADED", "DOWNLOADING", "EXISTS", "MOUNTED", "PUSHED", "UPLOADING",
           "BlobProgress", "ProgressCallback", "report"]
