"""Content-addressable blob storage: the :class:`ContentStore` protocol and its local store."""

from layerstore.content.local import LocalStore
from layerstore.content.store import ContentStore, ContentWriter, Info, IngestStatus

__all__ = ["ContentStore", "ContentWriter", "Info", "IngestStatus", "LocalStore"]
