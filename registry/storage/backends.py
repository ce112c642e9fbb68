"""The storage driver the settings choose (``storage = "filesystem" | "s3"``)."""

from __future__ import annotations

from registry.config import Settings
from registry.storage.driver import StorageDriver
from registry.storage.filesystem import FilesystemDriver
from registry.storage.s3 import S3Driver, S3Options


def s3_driver(settings: Settings) -> S3Driver:
    """The S3 driver the ``s3_*`` settings describe (credentials: the AWS chain)."""
    return S3Driver(S3Options(
        bucket=settings.s3_bucket, endpoint=settings.s3_endpoint, region=settings.s3_region,
        prefix=settings.s3_prefix, path_style=settings.s3_path_style,
        redirect=settings.s3_redirect))


def storage_driver(settings: Settings) -> StorageDriver:
    """The driver of ``settings.storage`` (the filesystem one over ``root/content``)."""
    if settings.storage == "s3":
        return s3_driver(settings)
    return FilesystemDriver(settings.content_root)
