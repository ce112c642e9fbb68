"""Fixtures of a throwaway PostgreSQL for the registry tests (imported by conftest).

``postgres`` starts one cluster per session (child processes find it through
``$PYBUILD_TEST_POSTGRES_DIR``). ``metadata_env`` is the environment that puts the shared
API-suite server's metadata on it when ``PYBUILD_TEST_METADATA=postgres`` is set (empty
otherwise: SQLite under the server's root).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from registry.testing.engines import PostgresEngine, running

ENGINE_ENV = "PYBUILD_TEST_POSTGRES_DIR"
SWITCH_ENV = "PYBUILD_TEST_METADATA"


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresEngine]:
    """One throwaway PostgreSQL for the session."""
    directory = tmp_path_factory.mktemp("postgres-engine")
    with running(directory, rgw=False) as engines:
        assert engines.postgres is not None
        os.environ[ENGINE_ENV] = str(directory)
        try:
            yield engines.postgres
        finally:
            os.environ.pop(ENGINE_ENV, None)


@pytest.fixture(scope="session")
def metadata_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """``REGISTRY_METADATA_URL`` of a fresh database with ``PYBUILD_TEST_METADATA=postgres``;
    nothing otherwise."""
    choice = os.environ.get(SWITCH_ENV, "sqlite")
    if choice == "sqlite":
        return {}
    if choice != "postgres":
        pytest.fail(f"{SWITCH_ENV} must be sqlite or postgres, not {choice!r}")
    engine: PostgresEngine = request.getfixturevalue("postgres")
    return {"REGISTRY_METADATA_URL": engine.create_database("api_suite")}
