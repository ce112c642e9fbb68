"""The HTTP API suite that walks the OCI distribution spec (``test_api_*.py``: the version
check, pull, push, content discovery, content management, referrers and the error codes),
run again against the scaled-out registry: three replicas on S3 and PostgreSQL behind
HAProxy round-robin, so that consecutive requests of one case reach different replicas.

Every case of those modules that needs only the shared server (the ``registry``, ``client``,
``api`` and ``repo`` fixtures, and its own parameters) is reused here as it is, under a name
saying where it comes from; the ``registry`` fixture is overridden to be the deployment.
Cases that start servers of their own (restarts, settings, authorizers) are not about
scale-out and stay in their modules.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

from tests.registry import (
    test_api_base,
    test_api_blobs,
    test_api_errors,
    test_api_manifests,
    test_api_referrers,
    test_api_tags_catalog,
    test_api_uploads,
)
from tests.registry.ha import HaRegistry

pytestmark = pytest.mark.usefixtures("ha_deadline")

SUITE: dict[str, ModuleType] = {
    "base": test_api_base,
    "pull": test_api_blobs,
    "push": test_api_uploads,
    "manifests": test_api_manifests,
    "discovery": test_api_tags_catalog,
    "referrers": test_api_referrers,
    "errors": test_api_errors,
}
SHARED_FIXTURES = {"registry", "client", "api", "repo"}


def _parametrized(function: Callable[..., object]) -> set[str]:
    names: set[str] = set()
    for mark in getattr(function, "pytestmark", ()):
        if mark.name == "parametrize":
            argnames = mark.args[0]
            if isinstance(argnames, str):
                argnames = [a.strip() for a in argnames.split(",")]
            names.update(argnames)
    return names


def reusable(module: ModuleType) -> Iterator[tuple[str, Callable[..., object]]]:
    """The cases of ``module`` that need nothing but the shared server."""
    for name, function in vars(module).items():
        if not name.startswith("test_") or not inspect.isfunction(function):
            continue
        if function.__module__ != module.__name__:
            continue
        params = set(inspect.signature(function).parameters)
        if params - _parametrized(function) <= SHARED_FIXTURES:
            yield name, function


for _group, _module in SUITE.items():
    for _name, _function in reusable(_module):
        globals()[f"test_{_group}_{_name[5:]}"] = _function


def test_the_suite_is_reused() -> None:
    reused = [name for name in globals() if name.startswith("test_") and name != (
        "test_the_suite_is_reused")]
    assert len(reused) >= 60, reused
    for group in SUITE:
        assert any(name.startswith(f"test_{group}_") for name in reused), group


@pytest.fixture
def registry(healthy_ha: HaRegistry) -> HaRegistry:
    """The API suite's server, here the balancer in front of the three replicas."""
    return healthy_ha
