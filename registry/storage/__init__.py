"""Registry storage: repository-scoped blobs and upload sessions over a content store."""

from registry.storage.blobs import BlobService, ContentCache, UploadHandle, range_header

__all__ = ["BlobService", "ContentCache", "UploadHandle", "range_header"]
