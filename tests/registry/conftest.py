"""Fixtures of the registry API suite: one shared two-worker server, clients, fresh names."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.registry.ha import ha, ha_deadline, healthy_ha  # noqa: F401 - fixtures
from tests.registry.pg import metadata_env, postgres  # noqa: F401 - fixtures
from tests.registry.rgw import rgw, storage_env  # noqa: F401 - rgw: for storage_env
from tests.registry.server import Api, RegistryServer


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory,
             request: pytest.FixtureRequest,
             metadata_env: dict[str, str]) -> Iterator[RegistryServer]:  # noqa: F811
    """A registry with two worker processes shared by the whole session; its metadata on
    PostgreSQL with ``PYBUILD_TEST_METADATA=postgres``, its blobs on a real Ceph RGW with
    ``PYBUILD_TEST_STORAGE=s3``."""
    root = tmp_path_factory.mktemp("registry") / "root"
    server = RegistryServer(root, workers=2, env={**metadata_env, **storage_env(request)},
                            log_path=tmp_path_factory.mktemp("logs") / "registry.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(registry: RegistryServer) -> Iterator[httpx.Client]:
    """An HTTP client of the shared registry."""
    with registry.client() as c:
        yield c


@pytest.fixture
def api(client: httpx.Client) -> Api:
    """Push helpers over :func:`client`."""
    return Api(client)


@pytest.fixture
def repo() -> str:
    """A repository name no other test uses."""
    return f"test/{uuid.uuid4().hex[:12]}"
