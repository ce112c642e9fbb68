"""Fixtures of the distribution client tests: locally made images, our registry with TLS and
token auth, and client settings that trust its CA through a ``certs.d``-style directory."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from layerstore.assembly import StoredImage, assemble_image
from layerstore.content.copy import put_bytes
from layerstore.content.local import LocalStore
from layerstore.diff import write_tree
from layerstore.oci import Descriptor, Index, MediaType, Platform, describe
from registry.client import ClientSettings, Credentials, RetryPolicy
from tests.registry.images import busybox_image, multiarch_index
from tests.registry.test_auth_server import AuthServer, start_auth_server

#: Quick retries: a test that expects a failure must not wait minutes for it.
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.1, max_delay=0.5, total=15.0)


@dataclass(frozen=True)
class Images:
    """Images in a local content store: ``base`` (busybox, one layer), ``app`` (base plus a
    layer), ``arm`` (base for arm64), ``multi`` (an index over amd64 ``base`` and
    ``arm``), ``docker`` (busybox as a Docker schema2 image) and ``docker_list`` (a Docker
    manifest list holding it for linux/amd64)."""

    store: LocalStore
    base: StoredImage
    app: StoredImage
    arm: StoredImage
    multi: Descriptor
    docker: StoredImage
    docker_list: Descriptor


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Images:
    """The shared source images (do not modify the store)."""
    tmp = tmp_path_factory.mktemp("client-images")
    store = LocalStore(tmp / "store")
    base = busybox_image(store, busybox_rootfs, architecture="amd64")
    app = busybox_image(store, busybox_rootfs, architecture="amd64",
                        extra={"app/data": b"app data\n" * 1000}, workdir=tmp / "work")
    arm = busybox_image(store, busybox_rootfs, architecture="arm64")
    multi = multiarch_index(store, {"amd64": base, "arm64": arm})
    layer = write_tree(busybox_rootfs, store, "gzip", docker_media_type=True,
                       source_date_epoch=0)
    docker = assemble_image(store, replace(base.image, created="2024-02-02T00:00:00Z"),
                            [layer], docker=True)
    listed = replace(docker.manifest, platform=Platform(architecture="amd64", os="linux"))
    raw = Index(manifests=(listed,), media_type=MediaType.DOCKER_MANIFEST_LIST).to_json()
    put_bytes(store, raw)
    docker_list = describe(MediaType.DOCKER_MANIFEST_LIST, raw)
    return Images(store, base, app, arm, multi, docker, docker_list)


class StaticCredentials:
    """A credential source holding one user for every registry."""

    def __init__(self, username: str, password: str) -> None:
        self.credentials = Credentials(username, password)

    def lookup(self, registry: str) -> Credentials | None:
        """The one user."""
        return self.credentials


def trusting_settings(tmp: Path, address: str, ca: Path, **changes: object) -> ClientSettings:
    """Settings trusting ``ca`` for ``address`` through ``tmp/certs.d/ADDRESS/ca.crt``, with
    the credentials file in ``tmp`` and quick retries; loopback registries are not taken as
    insecure, so the certificate is really checked."""
    certs = tmp / "certs.d" / address
    certs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca, certs / "ca.crt")
    values: dict[str, object] = {"certs_dir": tmp / "certs.d",
                                 "docker_config": tmp / "docker" / "config.json",
                                 "retry": FAST_RETRY, "timeout": 20.0,
                                 "loopback_insecure": False}
    values.update(changes)
    return ClientSettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """Our registry over TLS with token auth and the access rules of the auth tests."""
    server = start_auth_server(tmp_path_factory.mktemp("client-ours"))
    yield server
    server.stop()


def requests_in_log(log: str, method: str, path_pattern: str) -> list[str]:
    """The access-log lines of ``method`` requests whose path matches ``path_pattern``."""
    pattern = re.compile(rf"\b{method} ({path_pattern})\S* (\d+) ")
    return [m.group(0) for m in pattern.finditer(log)]
