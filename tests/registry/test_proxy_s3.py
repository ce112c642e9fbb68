"""Mirror mode with its blobs on S3 (a real Ceph RGW): what it fetches goes through the S3
driver, readers follow the spool file while the fetch runs, and concurrent first pulls in
two server processes fetch a blob once."""

from __future__ import annotations

import hashlib
import random
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry.testing.deadline import time_limit
from registry.testing.engines import RgwEngine
from registry.testing.processes import RegistryProcess
from tests.registry.proxy_env import Upstream, mirror, push_blob, start_upstream
from tests.registry.test_proxy import pull
from tests.registry.test_s3_server import keys

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path
             ) -> Iterator[Upstream]:
    """distribution with library/busybox:latest, behind a counting proxy."""
    up = start_upstream(tmp_path_factory.mktemp("proxy-s3-upstream"), busybox_rootfs)
    yield up
    up.stop()


@pytest.fixture(scope="module")
def prefix() -> str:
    """The bucket prefix of the mirror's blobs."""
    return f"mirror-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, rgw: RgwEngine,
          prefix: str) -> Iterator[RegistryProcess]:
    """Our registry (two workers) mirroring the upstream, its blobs on the RGW."""
    proc = mirror(tmp_path_factory.mktemp("proxy-s3") / "root", upstream.proxy.url,
                  env={**rgw.settings(), "REGISTRY_S3_PREFIX": prefix}).start()
    yield proc
    proc.stop()


def test_a_pull_through_a_mirror_on_s3(cache: RegistryProcess, upstream: Upstream,
                                       rgw: RgwEngine, prefix: str) -> None:
    with time_limit(180), httpx.Client(base_url=cache.url, timeout=60) as client:
        digest, blobs = pull(client, "library/busybox", "latest")
        assert digest == upstream.busybox
        before = upstream.proxy.count()
        assert pull(client, "library/busybox", "latest") == (digest, blobs)
        assert upstream.proxy.count() == before
    stored = keys(rgw, prefix)
    for blob in blobs:
        assert f"{prefix}/blobs/sha256/{blob.split(':')[1]}" in stored
    assert not [k for k in stored if "/proxy/staging/" in k]


def test_concurrent_first_pulls_on_s3_fetch_a_blob_once(cache: RegistryProcess,
                                                        upstream: Upstream) -> None:
    data = random.Random(3).randbytes(40 * MIB)
    digest = push_blob(upstream.registry.url, "library/s3big", data)
    results: list[str] = []
    errors: list[BaseException] = []

    def get() -> None:
        try:
            hasher = hashlib.sha256()
            with httpx.Client(base_url=cache.url, timeout=120) as client, client.stream(
                    "GET", f"/v2/library/s3big/blobs/{digest}") as response:
                assert response.status_code == 200
                for chunk in response.iter_bytes():
                    hasher.update(chunk)
            results.append(f"sha256:{hasher.hexdigest()}")
        except BaseException as exc:
            errors.append(exc)

    with time_limit(300):
        threads = [threading.Thread(target=get) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors
    assert results == [digest] * 8
    assert upstream.proxy.count("GET", digest) == 1
