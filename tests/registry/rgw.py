"""A real Ceph RGW for the whole test session (started once, on first use)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from registry.storage.s3 import S3Driver, S3Options
from registry.testing.engines import REGION, RgwEngine, start_rgw, stop_rgw
from tests.peers import require


@pytest.fixture(scope="session")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RgwEngine]:
    """A single-node Ceph cluster with radosgw and a ``registry`` bucket."""
    for tool in ("ceph-mon", "ceph-mgr", "ceph-osd", "radosgw", "radosgw-admin"):
        require(tool)
    engine = start_rgw(tmp_path_factory.mktemp("rgw"))
    try:
        yield engine
    finally:
        stop_rgw(engine)


def s3_options(engine: RgwEngine, *, prefix: str = "", redirect: bool = False,
               bucket: str | None = None) -> S3Options:
    """Driver options for ``engine``'s bucket."""
    return S3Options(bucket=bucket or engine.bucket, endpoint=engine.endpoint, region=REGION,
                     prefix=prefix, path_style=True, redirect=redirect)


def s3_driver(engine: RgwEngine, **kwargs: object) -> S3Driver:
    """A driver for ``engine`` with its credentials given explicitly."""
    import boto3
    import botocore.config

    options = s3_options(engine, **kwargs)  # type: ignore[arg-type]
    client = boto3.session.Session(
        aws_access_key_id=engine.access_key, aws_secret_access_key=engine.secret_key,
    ).client("s3", endpoint_url=engine.endpoint, config=botocore.config.Config(
        region_name=REGION, signature_version="s3v4", s3={"addressing_style": "path"},
        retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=60))
    return S3Driver(options, client)


def rgw_environment(engine: RgwEngine) -> dict[str, str]:
    """The environment of a registry serving from ``engine`` (settings and credentials)."""
    return dict(engine.settings())


STORAGE_ENV = "PYBUILD_TEST_STORAGE"


def storage_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment that puts a test registry's blobs where ``PYBUILD_TEST_STORAGE``
    says: nothing for the filesystem, a fresh prefix of the session's RGW for ``s3``."""
    if os.environ.get(STORAGE_ENV) != "s3":
        return {}
    engine: RgwEngine = request.getfixturevalue("rgw")
    return {**engine.settings(), "REGISTRY_S3_PREFIX": f"t-{uuid.uuid4().hex[:10]}"}
