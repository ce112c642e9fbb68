"""layerstore: the OCI content model, content-addressable storage, overlay snapshots,
layer diff/apply and image formats (OCI layout, docker-archive)."""
