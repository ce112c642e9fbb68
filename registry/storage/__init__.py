"""Registry storage: blob bytes and upload sessions, on a storage driver (filesystem, S3)
or on the layerstore content store, with the metadata store deciding what each repository
sees. Import the modules themselves (``registry.storage.blobs``, ``.driverblobs``, …)."""
