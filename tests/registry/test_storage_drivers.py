"""The storage-driver conformance suite on every driver: the filesystem, and S3 on a real
Ceph RGW (plain and with presigned redirects); plus the S3 driver's own failure modes."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.storage.driver import StorageDriver
from registry.storage.errors import BackendMisconfigured, BackendUnavailable
from registry.storage.filesystem import FilesystemDriver
from registry.storage.s3 import S3Driver, S3Options
from registry.testing.driver_suite import StorageDriverSuite, unique_prefix
from registry.testing.engines import RgwEngine
from tests.registry.rgw import s3_driver

# The same ``tmp_path`` reopens the same namespace, so the engine is kept on the class.
_ENGINE: dict[str, RgwEngine] = {}


class TestFilesystemDriver(StorageDriverSuite):
    """The suite on a local directory."""

    def make_driver(self, tmp_path: Path) -> StorageDriver:
        return FilesystemDriver(tmp_path / "storage")


class TestS3Driver(StorageDriverSuite):
    """The suite on a Ceph RGW bucket, each test under its own key prefix."""

    redirect = False

    @pytest.fixture(autouse=True)
    def _engine(self, rgw: RgwEngine) -> None:
        _ENGINE["rgw"] = rgw

    def make_driver(self, tmp_path: Path) -> StorageDriver:
        return s3_driver(_ENGINE["rgw"], prefix=unique_prefix(tmp_path), redirect=self.redirect)


class TestS3DriverRedirect(TestS3Driver):
    """The suite again with presigned URLs (the redirect case fetches one with curl's
    peer, httpx)."""

    redirect = True

    def test_redirect_url_is_given(self, tmp_path: Path) -> None:
        d = self.make_driver(tmp_path)
        d.put_content("x", b"1")
        url = d.redirect_url("x")
        assert url is not None and "X-Amz-Signature=" in url


def test_s3_check_names_an_unknown_bucket(rgw: RgwEngine) -> None:
    driver = s3_driver(rgw, bucket="no-such-bucket-here")
    with pytest.raises(BackendMisconfigured) as info:
        driver.check()
    assert info.value.setting == "s3.bucket"
    assert "no-such-bucket-here" in str(info.value)


def test_s3_check_names_refused_credentials(rgw: RgwEngine) -> None:
    import boto3

    client = boto3.session.Session(aws_access_key_id="WRONGKEY000000000000",
                                   aws_secret_access_key="wrong").client(
        "s3", endpoint_url=rgw.endpoint, region_name="us-east-1")
    driver = S3Driver(S3Options(bucket=rgw.bucket, endpoint=rgw.endpoint, path_style=True),
                      client)
    with pytest.raises(BackendMisconfigured) as info:
        driver.check()
    assert info.value.setting == "s3 credentials"


def test_s3_unreachable_endpoint_is_unavailable(tmp_path: Path) -> None:
    import boto3
    import botocore.config

    from registry.testing.processes import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"
    client = boto3.session.Session(aws_access_key_id="A", aws_secret_access_key="B").client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        config=botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=2))
    driver = S3Driver(S3Options(bucket="b", endpoint=endpoint, path_style=True), client)
    with pytest.raises(BackendUnavailable):
        driver.get_content("x")
    with pytest.raises(BackendMisconfigured) as info:
        driver.check()
    assert info.value.setting == "s3.endpoint"


def test_filesystem_driver_sees_a_content_store_root(tmp_path: Path) -> None:
    """The filesystem driver over ``<root>/content`` finds the blobs a registry root written
    by the layerstore content store holds, where the blob paths say."""
    from layerstore.content.copy import put_bytes
    from layerstore.content.local import LocalStore
    from layerstore.digest import Digest
    from registry.storage.paths import blob_path
    from registry.testing.driver_suite import read_all

    store = LocalStore(tmp_path / "root" / "content")
    data = b"a blob from an existing root" * 1000
    digest = Digest.from_bytes(data)
    put_bytes(store, data, expected=digest)
    driver = FilesystemDriver(tmp_path / "root" / "content")
    assert driver.stat(blob_path(digest)).size == len(data)
    assert read_all(driver, blob_path(digest), 5) == data[5:]
    assert blob_path(digest) in [info.path for info in driver.walk("blobs")]


def test_filesystem_writer_excludes_a_second_writer(tmp_path: Path) -> None:
    """A filesystem writer holds its file: another writer of the path (any process) is
    refused until it is closed, and a new writer does not truncate the held file."""
    from registry.storage.errors import PathBusy
    from registry.testing.driver_suite import read_all

    driver = FilesystemDriver(tmp_path / "storage")
    first = driver.writer("uploads/u/data")
    first.write(b"held bytes")
    with pytest.raises(PathBusy):
        FilesystemDriver(tmp_path / "storage").writer("uploads/u/data")
    with pytest.raises(PathBusy):
        driver.writer("uploads/u/data", append=True, state=first.state())
    state = first.state()
    first.close()
    second = driver.writer("uploads/u/data", append=True, state=state)
    second.write(b" and more")
    second.commit()
    assert read_all(driver, "uploads/u/data") == b"held bytes and more"


def test_filesystem_put_content_stages_outside_stored_content(tmp_path: Path) -> None:
    """``put_content`` writes its temporary file in the staging directory, so a crash never
    leaves one beside stored content; leftovers older than an hour go when a driver opens."""
    import os
    import time

    from registry.storage.filesystem import STALE_STAGING

    driver = FilesystemDriver(tmp_path / "storage")
    driver.put_content("blobs/sha256/abc", b"x")
    assert os.listdir(tmp_path / "storage" / "blobs" / "sha256") == ["abc"]
    staging = tmp_path / "storage" / ".tmp-staging"
    assert staging.is_dir() and driver.list("") == ["blobs"]
    old, new = staging / ".tmp-old", staging / ".tmp-new"
    old.write_bytes(b"left by a crash")
    new.write_bytes(b"being written")
    past = time.time() - STALE_STAGING - 60
    os.utime(old, (past, past))
    FilesystemDriver(tmp_path / "storage")
    assert sorted(os.listdir(staging)) == [".tmp-new"]
    assert [info.path for info in driver.walk("")] == ["blobs/sha256/abc"]
