"""A scaled-out registry for the tests: three ``registry serve`` replicas, each with its own
empty root, sharing one PostgreSQL database and one Ceph RGW bucket prefix, behind HAProxy
(:mod:`registry.testing.balancer`, round-robin without stickiness).

The ``ha`` fixture (one deployment for the session, on the session's engines) hands out a
:class:`HaRegistry`; a case that kills or stops a replica brings it back with
:meth:`HaRegistry.revive` before it ends (the ``healthy_ha`` fixture checks it did).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.testing.balancer import Balancer
from registry.testing.balancer import start as start_balancer
from registry.testing.deadline import time_limit
from registry.testing.engines import PostgresEngine, RgwEngine
from registry.tls import TlsFiles, default_names, ensure_certificates
from tests.registry.server import RegistryServer

REPLICAS = 3
TIMEOUT = 150
ACCESS_LINE = re.compile(r"registry\.access (?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d{3}) ")


@dataclass
class HaRegistry:
    """The replicas and the balancer in front of them; ``url``/``client()`` reach the
    balancer, as every client of a scaled-out registry does."""

    replicas: list[RegistryServer]
    balancer: Balancer
    env: dict[str, str]

    @property
    def url(self) -> str:
        """The balancer's base URL."""
        return self.balancer.url

    @property
    def address(self) -> str:
        """The balancer's ``host:port`` (image references)."""
        return self.balancer.address

    @property
    def port(self) -> int:
        """The balancer's port."""
        return self.balancer.port

    @property
    def root(self) -> Path:
        """The first replica's root (it holds no blobs: they are in the bucket)."""
        root = self.replicas[0].root
        assert root is not None
        return root

    @property
    def prefix(self) -> str:
        """The bucket prefix the replicas share."""
        return self.env["REGISTRY_S3_PREFIX"]

    def client(self, **kwargs: Any) -> httpx.Client:
        """An HTTP client of the balancer."""
        kwargs.setdefault("verify", False)
        kwargs.setdefault("timeout", 60.0)
        return httpx.Client(base_url=self.url, **kwargs)

    def log(self) -> str:
        """Everything every replica wrote."""
        return "\n".join(r.log() for r in self.replicas)

    def access_log(self, index: int) -> list[tuple[str, str, int]]:
        """``(method, path, status)`` of every request replica ``index`` logged."""
        return [(m["method"], m["path"], int(m["status"]))
                for m in ACCESS_LINE.finditer(self.replicas[index].log())]

    def kill(self, index: int) -> None:
        """``kill -9`` replica ``index`` (every process of it), as a crash would."""
        self.replicas[index].kill()

    def revive(self, *indexes: int) -> None:
        """Start the replicas ``indexes`` (all when none is given) again on their ports and
        roots where they are not running, and wait until the balancer sends every replica
        requests."""
        for index in indexes or range(len(self.replicas)):
            replica = self.replicas[index]
            if replica.proc is None or replica.proc.poll() is not None:
                replica.start()
        self.balancer.wait_servers(len(self.replicas))

    def all_up(self) -> bool:
        """Whether every replica runs and the balancer sees it up."""
        return (all(r.proc is not None and r.proc.poll() is None for r in self.replicas)
                and len(self.balancer.up_servers()) == len(self.replicas))

    def stop(self) -> None:
        """Stop the balancer and the replicas."""
        self.balancer.stop()
        for replica in self.replicas:
            replica.stop()


def shared_tls(directory: Path) -> TlsFiles:
    """One private CA and server certificate (for loopback) that every replica and the
    balancer serve, as ``tls_cert``/``tls_key`` settings would share them; the balancer's
    certificate-and-key PEM is written next to them as ``haproxy.pem``."""
    files = ensure_certificates(directory, default_names("127.0.0.1"))
    (directory / "haproxy.pem").write_bytes(files.cert.read_bytes() + files.key.read_bytes())
    return files


def start_ha(directory: Path, postgres: PostgresEngine, rgw: RgwEngine, *,
             replicas: int = REPLICAS, extra_env: dict[str, str] | None = None,
             tls: TlsFiles | None = None) -> HaRegistry:
    """Start ``replicas`` servers (one worker each, own empty root) on a fresh database and
    bucket prefix, and HAProxy in front of them; with ``tls`` every replica serves that
    certificate and the balancer terminates TLS with it and speaks TLS to the replicas."""
    name = f"ha_{uuid.uuid4().hex[:10]}"
    env = {**rgw.settings(), "REGISTRY_S3_PREFIX": name.replace("_", "-"),
           "REGISTRY_METADATA_URL": postgres.create_database(name), **(extra_env or {})}
    if tls is not None:
        env.update(REGISTRY_TLS_CERT=str(tls.cert), REGISTRY_TLS_KEY=str(tls.key))
    servers: list[RegistryServer] = []
    try:
        for i in range(replicas):
            server = RegistryServer(directory / f"replica{i}", workers=1, env=env,
                                    log_path=directory / f"replica{i}.log")
            if tls is not None:
                server.scheme = "https"
            servers.append(server.start())
        balancer = start_balancer(
            [s.address for s in servers], directory / "haproxy", backend_tls=tls is not None,
            frontend_pem=None if tls is None else tls.cert.parent / "haproxy.pem")
        balancer.wait_servers(replicas)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return HaRegistry(servers, balancer, env)


@pytest.fixture(scope="session")
def ha(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresEngine,
       rgw: RgwEngine) -> Iterator[HaRegistry]:
    """Three replicas behind HAProxy, on the session's PostgreSQL and RGW."""
    deployment = start_ha(tmp_path_factory.mktemp("ha"), postgres, rgw)
    yield deployment
    deployment.stop()


@pytest.fixture
def healthy_ha(ha: HaRegistry) -> Iterator[HaRegistry]:
    """The deployment with every replica up, before and after the case."""
    ha.revive()
    yield ha
    assert ha.all_up(), "the case left a replica down"


@pytest.fixture
def ha_deadline() -> Iterator[None]:
    """Fail a case that runs longer than TIMEOUT seconds instead of hanging the session."""
    with time_limit(TIMEOUT):
        yield
