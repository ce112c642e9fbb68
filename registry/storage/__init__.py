"""Registry storage: blob bytes and upload sessions on a storage driver (the filesystem one
over ``root/content``, or S3), with the metadata store deciding what each repository sees.
Import the modules themselves (``registry.storage.blobs``, ``.uploads``, ``.manifests``, …)."""
