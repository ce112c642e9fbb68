"""Registry metadata: repositories, tags, manifests, blob links, referrers, upload sessions."""

from registry.metadata.store import ManifestRecord, MetadataStore, UploadRecord

__all__ = ["ManifestRecord", "MetadataStore", "UploadRecord"]
