"""The upload service on each driver (filesystem, S3 on a real Ceph RGW) with the SQLite
metadata store, as two server processes share them: a session written by one and closed by
the other is verified without reading its bytes back when the closing PUT brings none, by
reading them back when it does; a session whose stored bytes are lost ends cleanly."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from layerstore.digest import Digest
from registry.metadata.sqlite import SqliteMetadataStore
from registry.storage.driver import StorageDriver
from registry.storage.errors import DigestMismatch, PathNotFound, UploadBusy, UploadUnknown
from registry.storage.filesystem import FilesystemDriver
from registry.storage.paths import blob_path, upload_path
from registry.storage.uploads import DIGEST, SIZE, UploadService
from registry.testing.driver_suite import read_all, unique_prefix
from registry.testing.engines import RgwEngine
from tests.registry.rgw import s3_driver

REPO = "team/app"
CHUNK = 256 * 1024


async def _body(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start:start + CHUNK]


@pytest.fixture(params=["filesystem", "s3"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> StorageDriver:
    """Each driver, empty."""
    if request.param == "filesystem":
        return FilesystemDriver(tmp_path / "content")
    rgw: RgwEngine = request.getfixturevalue("rgw")
    return s3_driver(rgw, prefix=unique_prefix(tmp_path))


@pytest.fixture
def meta(tmp_path: Path) -> Iterator[SqliteMetadataStore]:
    """A metadata store."""
    store = SqliteMetadataStore(tmp_path / "metadata.db")
    yield store
    store.close()


def digest_of(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


async def _receive(service: UploadService, upload_id: str, data: bytes) -> int:
    async with service.upload(REPO, upload_id) as handle:
        return await handle.receive(_body(data))


async def _commit(service: UploadService, upload_id: str, digest: Digest,
                  last: bytes = b"") -> int:
    async with service.upload(REPO, upload_id) as handle:
        await handle.receive(_body(last))
        return await handle.commit(digest)


def test_a_bodiless_put_elsewhere_is_verified_by_the_recorded_digest(
        driver: StorageDriver, meta: SqliteMetadataStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)

    async def run() -> None:
        first, second = UploadService(driver, meta), UploadService(driver, meta)
        record = await first.start(REPO)
        assert await _receive(first, record.uuid, data) == len(data)
        labels = meta.get_upload(record.uuid).labels  # type: ignore[union-attr]
        assert labels[SIZE] == str(len(data)) and labels[DIGEST] == str(digest_of(data))
        assert await _commit(second, record.uuid, digest_of(data)) == len(data)

    asyncio.run(run())
    assert read_all(driver, blob_path(digest_of(data)), 0) == data
    assert meta.blob_size(REPO, digest_of(data)) == len(data)
    assert meta.uploads() == []


def test_a_wrong_digest_elsewhere_stores_nothing(driver: StorageDriver,
                                                 meta: SqliteMetadataStore) -> None:
    data = os.urandom(100_000)
    wrong = digest_of(b"something else")

    async def run() -> str:
        first, second = UploadService(driver, meta), UploadService(driver, meta)
        record = await first.start(REPO)
        await _receive(first, record.uuid, data)
        with pytest.raises(DigestMismatch):
            await _commit(second, record.uuid, wrong)
        return record.uuid

    upload_id = asyncio.run(run())
    for digest in (wrong, digest_of(data)):
        with pytest.raises(PathNotFound):
            driver.stat(blob_path(digest))
        assert meta.blob_size(REPO, digest) is None
    assert meta.get_upload(upload_id) is None


def test_bytes_from_two_processes_are_read_back(driver: StorageDriver,
                                                meta: SqliteMetadataStore) -> None:
    data = os.urandom(700_000)

    async def run(last: bytes, digest: Digest) -> None:
        first, second = UploadService(driver, meta), UploadService(driver, meta)
        record = await first.start(REPO)
        await _receive(first, record.uuid, data[:300_000])
        await _receive(second, record.uuid, data[300_000:600_000])
        labels = meta.get_upload(record.uuid).labels  # type: ignore[union-attr]
        assert DIGEST not in labels
        await _commit(first, record.uuid, digest, last)

    asyncio.run(run(data[600_000:], digest_of(data)))
    assert read_all(driver, blob_path(digest_of(data)), 0) == data
    with pytest.raises(DigestMismatch):
        asyncio.run(run(data[600_000:], digest_of(data[:-1])))


def test_lost_bytes_end_the_session(tmp_path: Path, meta: SqliteMetadataStore) -> None:
    driver = FilesystemDriver(tmp_path / "content")
    service = UploadService(driver, meta)

    async def run() -> str:
        record = await service.start(REPO)
        await _receive(service, record.uuid, os.urandom(50_000))
        # A power loss took bytes the labels count.
        os.truncate(driver.local_path(upload_path(record.uuid)), 20_000)
        with pytest.raises(UploadUnknown, match="lost the bytes"):
            await _receive(service, record.uuid, b"more")
        with pytest.raises(UploadUnknown):
            await service.status(REPO, record.uuid)
        return record.uuid

    upload_id = asyncio.run(run())
    assert meta.get_upload(upload_id) is None
    assert not driver.local_path(upload_path(upload_id)).exists()


def test_a_session_another_process_writes_is_busy(tmp_path: Path,
                                                  meta: SqliteMetadataStore) -> None:
    driver = FilesystemDriver(tmp_path / "content")
    service = UploadService(driver, meta)

    async def run() -> None:
        record = await service.start(REPO)
        await _receive(service, record.uuid, b"first")
        # Another server process is in the middle of a request on this session.
        held = driver.writer(upload_path(record.uuid), append=True,
                             state=meta.get_upload(record.uuid).labels)  # type: ignore[union-attr]
        try:
            with pytest.raises(UploadBusy):
                await _receive(service, record.uuid, b"second")
            with pytest.raises(UploadBusy):
                await _commit(service, record.uuid, digest_of(b"first"))
        finally:
            held.close()
        assert await _commit(service, record.uuid, digest_of(b"firstlast"), b"last") == 9

    asyncio.run(run())
    assert read_all(driver, blob_path(digest_of(b"firstlast")), 0) == b"firstlast"
