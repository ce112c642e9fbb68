"""``pybuild login`` and ``pybuild logout`` against our registry (TLS, token auth) and CNCF
distribution (TLS, htpasswd basic auth), trusting their CAs through
``/etc/docker/certs.d/HOST:PORT/ca.crt`` as docker does."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.cli import main
from layerstore.content.local import LocalStore
from layerstore.oci import Platform
from registry.client import Credentials, lookup, pull, push
from registry.client.settings import DEFAULT_CERTS_DIR, ClientSettings
from registry.testing.processes import distribution
from tests.peers import require
from tests.registry.client.conftest import Images
from tests.registry.client.test_distribution import (
    PASSWORD,
    USER,
    htpasswd,
    start_distribution,
)
from tests.registry.test_auth_server import PASSWORDS, AuthServer

AMD64 = Platform(architecture="amd64", os="linux")


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private docker config directory and an empty daemon.json; the config path."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    daemon = tmp_path / "daemon.json"
    daemon.write_text("{}")
    monkeypatch.setenv("PYBUILD_DAEMON_CONFIG", str(daemon))
    return tmp_path / "docker" / "config.json"


@contextlib.contextmanager
def trust(address: str, ca: Path) -> Iterator[None]:
    """Put ``ca`` in ``/etc/docker/certs.d/ADDRESS/`` while the test runs."""
    directory = DEFAULT_CERTS_DIR / address
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca, directory / "ca.crt")
    try:
        yield
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def pybuild(tmp: Path, monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str = "") -> int:
    """Run ``pybuild --root tmp/root ARGS`` with ``stdin``."""
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["--root", str(tmp / "root"), *args])


def test_login_and_logout_with_token_auth(ours: AuthServer, images: Images, tmp_path: Path,
                                          environment: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with trust(ours.address, ours.ca):
        status = pybuild(tmp_path, monkeypatch, "login", "-u", "alice", "--password-stdin",
                         ours.address, stdin=PASSWORDS["alice"] + "\n")
        out, err = capsys.readouterr()
        assert status == 0 and out.strip() == "Login Succeeded", err
        assert lookup(ours.address, environment) == Credentials("alice", PASSWORDS["alice"])

        ref = f"{ours.address}/team-a/login:1"
        push(images.store, images.base.manifest, ref)
        assert pull(ref, LocalStore(tmp_path / "pulled"), AMD64,
                    ClientSettings()).manifest == images.base.manifest

        status = pybuild(tmp_path, monkeypatch, "login", "-u", "alice", "-p", "wrong",
                         ours.address)
        out, err = capsys.readouterr()
        assert status == 1 and "Login Succeeded" not in out
        assert f"login to {ours.address} as 'alice' failed" in err
        assert "--password-stdin" in err and "Traceback" not in err
        assert "incorrect username or password" in err and "pybuild login" not in err
        assert lookup(ours.address, environment) == Credentials("alice", PASSWORDS["alice"])

        assert pybuild(tmp_path, monkeypatch, "logout", ours.address) == 0
        assert capsys.readouterr().out.strip() == f"Removing login credentials for {ours.address}"
        assert lookup(ours.address, environment) is None
        assert json.loads(environment.read_text())["auths"] == {}
        assert pybuild(tmp_path, monkeypatch, "logout", ours.address) == 0
        assert capsys.readouterr().out.strip() == f"Not logged in to {ours.address}"


def test_login_with_basic_auth(images: Images, tmp_path: Path, environment: Path,
                               monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    proc, tls = start_distribution(tmp_path / "dist")
    try:
        assert tls.ca is not None
        with trust(proc.address, tls.ca):
            status = pybuild(tmp_path, monkeypatch, "login", "--username", USER,
                             "--password-stdin", f"https://{proc.address}", stdin=PASSWORD)
            assert status == 0 and "Login Succeeded" in capsys.readouterr().out
            assert lookup(proc.address, environment) == Credentials(USER, PASSWORD)
            assert push(images.store, images.base.manifest,
                        f"{proc.address}/basic/login:1") == images.base.manifest.digest
            status = pybuild(tmp_path, monkeypatch, "login", "-u", USER, "--password-stdin",
                             proc.address, stdin="wrong\n")
            err = capsys.readouterr().err
            assert status == 1 and f"login to {proc.address} as '{USER}' failed" in err
            status = pybuild(tmp_path, monkeypatch, "login", "--password-stdin", proc.address,
                             stdin=PASSWORD)
            assert status == 1 and "-u/--username" in capsys.readouterr().err
    finally:
        proc.stop()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_login_to_a_plain_http_registry_on_loopback(images: Images, tmp_path: Path,
                                                    environment: Path, host: str,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    require("docker-registry")
    proc = distribution(tmp_path / "dist", htpasswd=htpasswd(tmp_path / "htpasswd")).start()
    try:
        address = f"{host}:{proc.port}"
        status = pybuild(tmp_path, monkeypatch, "login", "-u", USER, "--password-stdin",
                         address, stdin=PASSWORD)
        out, err = capsys.readouterr()
        assert status == 0 and out.strip() == "Login Succeeded", err
        assert lookup(address, environment) == Credentials(USER, PASSWORD)
        ref = f"{address}/plain/login:1"
        assert push(images.store, images.base.manifest, ref) == images.base.manifest.digest
        assert pull(ref, LocalStore(tmp_path / "pulled"), AMD64,
                    ClientSettings()).manifest == images.base.manifest
        status = pybuild(tmp_path, monkeypatch, "login", "-u", USER, "--password-stdin",
                         address, stdin="wrong\n")
        err = capsys.readouterr().err
        assert status == 1 and f"login to {address} as '{USER}' failed" in err
        assert "TLS" not in err and "certificate" not in err
    finally:
        proc.stop()
