"""The client against CNCF distribution (``docker-registry``) with htpasswd basic auth over
TLS: push and pull of OCI and Docker schema2 images and lists, chunked uploads, wrong
credentials, and a registry that asks for a client certificate."""

from __future__ import annotations

import datetime
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from layerstore.content.local import LocalStore
from layerstore.oci import MediaType, Platform
from registry.client import (
    BlobProgress,
    Transport,
    Unauthorized,
    Unreachable,
    list_tags,
    pull,
    push,
    store,
)
from registry.testing.processes import RegistryProcess, distribution
from registry.tls import TlsFiles, default_names, ensure_certificates
from tests.peers import require
from tests.registry.client.conftest import Images, trusting_settings
from tests.registry.client.test_ours import assert_same_blobs

AMD64 = Platform(architecture="amd64", os="linux")
USER, PASSWORD = "carl", "carl-secret"


def htpasswd(path: Path) -> Path:
    """An htpasswd file (bcrypt) with :data:`USER`."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    path.write_text(f"{USER}:{hashed}\n")
    return path


def start_distribution(tmp: Path, *, client_ca: Path | None = None
                       ) -> tuple[RegistryProcess, TlsFiles]:
    """docker-registry with htpasswd and TLS from a private CA (and client certificates
    checked against ``client_ca`` when given)."""
    require("docker-registry")
    tls = ensure_certificates(tmp / "tls", default_names("127.0.0.1"))
    proc = distribution(tmp / "root", htpasswd=htpasswd(tmp / "htpasswd"),
                        tls=(tls.cert, tls.key))
    if client_ca is not None:
        config = tmp / "root" / "config.yml"
        lines = config.read_text().splitlines()
        at = next(i for i, line in enumerate(lines) if line.strip().startswith("key:"))
        lines[at + 1:at + 1] = ["    clientcas:", f"      - {client_ca}"]
        config.write_text("\n".join(lines) + "\n")
        return _start_listening(proc), tls
    return proc.start(), tls


def _start_listening(proc: RegistryProcess, timeout: float = 30) -> RegistryProcess:
    """Start ``proc`` and wait until its port accepts connections (its ``/v2/`` cannot be
    probed without a client certificate)."""
    with proc.log_path.open("ab") as out:
        proc.proc = subprocess.Popen(proc.argv, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((proc.host, proc.port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.stop()
    pytest.fail(f"docker-registry did not listen on {proc.address}: {proc.log()[-2000:]}")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryProcess, Path]]:
    """A running distribution and its CA certificate."""
    proc, tls = start_distribution(tmp_path_factory.mktemp("dist"))
    assert tls.ca is not None
    yield proc, tls.ca
    proc.stop()


def counting(transport: Transport) -> list[str]:
    """Record ``METHOD path`` of every request the transport sends."""
    seen: list[str] = []
    transport.http.event_hooks["request"].append(
        lambda request: seen.append(f"{request.method} {request.url.path}"))
    return seen


def test_push_and_pull_oci_and_docker_images(dist: tuple[RegistryProcess, Path],
                                             images: Images, tmp_path: Path) -> None:
    proc, ca = dist
    settings = trusting_settings(tmp_path, proc.address, ca)
    store(proc.address, USER, PASSWORD, settings.docker_config)
    cases = {
        "oci:app": images.app.manifest, "docker:1": images.docker.manifest,
        "docker:list": images.docker_list, "multi:1": images.multi,
    }
    for tag, desc in cases.items():
        ref = f"{proc.address}/lib/{tag}"
        assert push(images.store, desc, ref, settings) == desc.digest
    assert sorted(list_tags(f"{proc.address}/lib/docker", settings)) == ["1", "list"]
    fresh = LocalStore(tmp_path / "pulled")
    app = pull(f"{proc.address}/lib/oci:app", fresh, AMD64, settings)
    assert app.manifest == images.app.manifest
    assert_same_blobs(images.store, fresh, app.manifest)
    docker = pull(f"{proc.address}/lib/docker:1", fresh, AMD64, settings)
    assert docker.manifest.media_type == MediaType.DOCKER_MANIFEST
    assert docker.config.media_type == MediaType.DOCKER_CONFIG
    listed = pull(f"{proc.address}/lib/docker:list", fresh, AMD64, settings)
    assert listed.index is not None and listed.index.media_type == MediaType.DOCKER_MANIFEST_LIST
    assert listed.manifest.digest == images.docker.manifest.digest
    multi = pull(f"{proc.address}/lib/multi:1", fresh, AMD64, settings)
    assert multi.manifest.digest == images.base.manifest.digest
    assert_same_blobs(images.store, fresh, multi.manifest)


def test_chunked_upload_of_large_blobs(dist: tuple[RegistryProcess, Path], images: Images,
                                       tmp_path: Path) -> None:
    proc, ca = dist
    settings = trusting_settings(tmp_path, proc.address, ca, monolithic_max=64 * 1024,
                                 chunk_size=200 * 1024)
    store(proc.address, USER, PASSWORD, settings.docker_config)
    layer = images.base.manifest
    events: list[BlobProgress] = []
    with Transport(proc.address, settings) as transport:
        seen = counting(transport)
        push(images.store, layer, f"{proc.address}/chunked/base:1", transport=transport,
             progress=events.append)
    layer_size = max(e.total for e in events)
    assert layer_size > 3 * 200 * 1024
    patches = [s for s in seen if s.startswith("PATCH ")]
    assert len(patches) == -(-layer_size // (200 * 1024))
    fresh = LocalStore(tmp_path / "pulled")
    pulled = pull(f"{proc.address}/chunked/base:1", fresh, AMD64, settings)
    assert_same_blobs(images.store, fresh, pulled.manifest)


def test_wrong_basic_credentials(dist: tuple[RegistryProcess, Path], images: Images,
                                 tmp_path: Path) -> None:
    proc, ca = dist
    settings = trusting_settings(tmp_path, proc.address, ca)
    store(proc.address, USER, "wrong", settings.docker_config)
    with pytest.raises(Unauthorized) as err:
        pull(f"{proc.address}/lib/oci:app", LocalStore(tmp_path / "pulled"), AMD64, settings)
    assert proc.address in str(err.value) and f"pybuild login {proc.address}" in str(err.value)
    no_creds = trusting_settings(tmp_path / "none", proc.address, ca)
    with pytest.raises(Unauthorized) as err:
        push(images.store, images.base.manifest, f"{proc.address}/lib/x:1", no_creds)
    assert "needs credentials" in str(err.value)


def test_untrusted_certificate_is_a_clear_error(dist: tuple[RegistryProcess, Path],
                                                tmp_path: Path) -> None:
    proc, _ = dist
    settings = trusting_settings(tmp_path, "elsewhere:1", Path(__file__))
    with pytest.raises(Unreachable) as err:
        pull(f"{proc.address}/lib/oci:app", LocalStore(tmp_path / "pulled"), AMD64, settings)
    message = str(err.value)
    assert "certificate" in message and f"{proc.address}/ca.crt" in message
    assert "insecure-registries" in message


def _client_certificate(tmp: Path) -> tuple[Path, Path, Path]:
    """A client CA and a client certificate + key signed by it (PEM files)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pybuild")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    tmp.mkdir(parents=True, exist_ok=True)
    paths = tmp / "client-ca.crt", tmp / "client.cert", tmp / "client.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_client_certificate_from_the_certs_directory(images: Images, tmp_path: Path) -> None:
    client_ca, cert, key = _client_certificate(tmp_path / "client")
    proc, tls = start_distribution(tmp_path / "mtls", client_ca=client_ca)
    try:
        assert tls.ca is not None
        without = trusting_settings(tmp_path / "without", proc.address, tls.ca)
        store(proc.address, USER, PASSWORD, without.docker_config)
        with pytest.raises(Unreachable):
            push(images.store, images.base.manifest, f"{proc.address}/m/base:1", without)
        settings = trusting_settings(tmp_path / "with", proc.address, tls.ca)
        store(proc.address, USER, PASSWORD, settings.docker_config)
        directory = settings.certs_dir / proc.address
        (directory / "client.cert").write_bytes(cert.read_bytes())
        (directory / "client.key").write_bytes(key.read_bytes())
        assert push(images.store, images.base.manifest, f"{proc.address}/m/base:1",
                    settings) == images.base.manifest.digest
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{proc.url}/v2/", verify=ssl.create_default_context(cafile=tls.ca),
                      timeout=10)
    finally:
        proc.stop()
