"""``registry serve --tls``: the private CA and server certificate made once and kept, the
operator's own certificate, TLS 1.2 as the floor, and what the server tells the operator."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from registry.testing.processes import free_port, ours
from registry.tls import SubjectNames, TlsError, default_names, ensure_certificates


def sans(path: Path) -> tuple[set[str], set[str]]:
    """The DNS names and IP addresses a certificate names."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (set(ext.get_values_for_type(x509.DNSName)),
            {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)})


def handshake(port: int, context: ssl.SSLContext) -> str:
    """Connect to 127.0.0.1:port with ``context``; the negotiated TLS version."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        return str(tls.version())


def test_tls_makes_a_private_ca_once_and_keeps_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    server = ours(root, tls=True, workers=1,
                  extra=["--tls-san", "registry.example", "--tls-san", "10.9.8.7"]).start()
    try:
        ca_path, tls_dir = root / "tls" / "ca.crt", root / "tls"
        log = server.log()
        assert str(ca_path) in log
        assert f"/etc/docker/certs.d/{server.address}/ca.crt" in log
        assert f"--cert-dir {tls_dir / 'trust'}" in log
        assert f"curl --cacert {ca_path}" in log
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
        assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        dns, ips = sans(tls_dir / "server.crt")
        assert {"localhost", socket.gethostname().lower(), "registry.example"} <= dns
        assert {"127.0.0.1", "::1", "10.9.8.7"} <= ips
        server_cert = x509.load_pem_x509_certificate((tls_dir / "server.crt").read_bytes())
        server_cert.verify_directly_issued_by(ca)
        for key in ("ca.key", "server.key"):
            assert stat.S_IMODE((tls_dir / key).stat().st_mode) == 0o600
        assert sorted(p.name for p in (tls_dir / "trust").iterdir()) == ["ca.crt"]
        trusting = ssl.create_default_context(cafile=str(ca_path))
        with httpx.Client(transport=httpx.HTTPTransport(verify=trusting)) as c:
            r = c.get(f"{server.url}/v2/")
            assert r.status_code == 401 and "Bearer realm=" in r.headers["WWW-Authenticate"]
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/v2/", verify=ssl.create_default_context())
        curl = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                               "--cacert", str(ca_path), f"{server.url}/v2/"],
                              capture_output=True, text=True, timeout=60)
        assert curl.stdout == "401", curl.stderr
    finally:
        server.stop()
    before = {name: (tls_dir / name).read_bytes() for name in ("ca.crt", "ca.key",
                                                               "server.crt", "server.key")}
    again = ours(root, tls=True, workers=1,
                 extra=["--tls-san", "registry.example", "--tls-san", "10.9.8.7"]).start()
    again.stop()
    assert {name: (tls_dir / name).read_bytes() for name in before} == before
    wider = ours(root, tls=True, workers=1, extra=["--tls-san", "new.example"]).start()
    wider.stop()
    assert (tls_dir / "ca.crt").read_bytes() == before["ca.crt"]
    assert (tls_dir / "server.crt").read_bytes() != before["server.crt"]
    assert "new.example" in sans(tls_dir / "server.crt")[0]
    x509.load_pem_x509_certificate((tls_dir / "server.crt").read_bytes()
                                   ).verify_directly_issued_by(ca)


def test_only_tls_1_2_and_newer(tmp_path: Path) -> None:
    server = ours(tmp_path / "root", tls=True, workers=1, extra=["--auth", "none"]).start()
    try:
        ca = str(tmp_path / "root" / "tls" / "ca.crt")
        modern = ssl.create_default_context(cafile=ca)
        assert handshake(server.port, modern) == "TLSv1.3"
        tls12 = ssl.create_default_context(cafile=ca)
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        assert handshake(server.port, tls12) == "TLSv1.2"
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(ca)
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises(ssl.SSLError):
            handshake(server.port, old)
        with httpx.Client(transport=httpx.HTTPTransport(verify=modern)) as c:
            assert c.get(f"{server.url}/v2/").status_code == 200
    finally:
        server.stop()


def own_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """An operator's CA and a server certificate for 127.0.0.1 signed by it."""
    ca_key = ec.generate_private_key(ec.SECP384R1())
    now = datetime.datetime.now(datetime.UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "operator CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "operator")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "op-ca.pem", directory / "op.crt", directory / "op.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_the_operators_certificate(tmp_path: Path) -> None:
    ca, cert, key = own_certificate(tmp_path)
    root = tmp_path / "root"
    server = ours(root, workers=1, extra=["--tls-cert", str(cert), "--tls-key", str(key)])
    server.scheme = "https"
    server.start()
    try:
        trusting = ssl.create_default_context(cafile=str(ca))
        with httpx.Client(transport=httpx.HTTPTransport(verify=trusting)) as c:
            r = c.get(f"{server.url}/v2/")
            assert r.status_code == 401 and "Bearer" in r.headers["WWW-Authenticate"]
        assert not (root / "tls").exists()
        assert f"serving TLS with {cert}" in server.log()
    finally:
        server.stop()
    wrong_key = tmp_path / "wrong.key"
    wrong_key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    failed = subprocess.run(
        [sys.executable, "-m", "registry.cli", "serve", "--root", str(root), "--addr",
         f"127.0.0.1:{free_port()}", "--tls-cert", str(cert), "--tls-key", str(wrong_key)],
        capture_output=True, text=True, timeout=60)
    assert failed.returncode == 2 and "cannot be used" in failed.stderr
    half = subprocess.run(
        [sys.executable, "-m", "registry.cli", "serve", "--root", str(root), "--tls-cert",
         str(cert)], capture_output=True, text=True, timeout=60)
    assert half.returncode == 2 and "tls_cert and tls_key" in half.stderr


def test_certificate_names_and_reissue(tmp_path: Path) -> None:
    names = default_names("10.0.0.5", ["Registry.Example", "[fd00::1]"])
    assert "registry.example" in names.dns and "localhost" in names.dns
    assert {str(ip) for ip in names.ips} >= {"127.0.0.1", "::1", "10.0.0.5", "fd00::1"}
    assert "0.0.0.0" not in {str(ip) for ip in default_names("0.0.0.0").ips}
    first = ensure_certificates(tmp_path, names)
    assert first.created
    assert not ensure_certificates(tmp_path, names).created
    assert not ensure_certificates(tmp_path, SubjectNames.parse(["localhost"])).created
    (tmp_path / "server.crt").write_text("garbage")
    assert ensure_certificates(tmp_path, names).created
    with pytest.raises(TlsError, match="neither"):
        SubjectNames.parse(["bad name!"])
