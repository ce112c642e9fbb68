"""TLS for ``registry serve``: the operator's certificate, or one made here.

Without ``tls_cert``/``tls_key`` the server makes, once, a private CA and a server
certificate signed by it under ``root/tls/`` (``ca.crt``, ``ca.key``, ``server.crt``,
``server.key``; keys mode 0600) with EC P-256 keys, and a copy of the CA certificate alone in
``root/tls/trust/ca.crt``, a directory to hand to ``--cert-dir``. The server certificate names
``localhost``, ``127.0.0.1``, ``::1``, the host's name, the listening address when it is a
specific one, and every ``tls_san``. It is made again (by the same CA) when a name is
missing, when it expires within 30 days or when it was not signed by the CA; the CA is kept,
so clients that trust it keep working. The server accepts TLS 1.2 and newer only.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import inspect
import ipaddress
import re
import secrets
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from layerstore.fsutil import atomic_write

TLS_DIR = "tls"
TRUST_DIR = "trust"
CA_DAYS = 3650
SERVER_DAYS = 825
RENEW_BEFORE = datetime.timedelta(days=30)
_DNS = re.compile(r"(\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                  r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TlsError(Exception):
    """A certificate or key cannot be made, read or used; the message names the file."""


@dataclass(frozen=True)
class TlsFiles:
    """What the server presents: certificate chain and key; ``ca`` is the private CA's
    certificate when the server made its own (``None`` for the operator's), ``created``
    whether this run made (or remade) the server certificate."""

    cert: Path
    key: Path
    ca: Path | None = None
    created: bool = False


@dataclass(frozen=True)
class SubjectNames:
    """The names a server certificate must carry."""

    dns: tuple[str, ...]
    ips: tuple[IPAddress, ...]

    @classmethod
    def parse(cls, names: Iterable[str]) -> SubjectNames:
        """Host names and addresses; TlsError for anything else."""
        dns: list[str] = []
        ips: list[IPAddress] = []
        for name in names:
            name = name.strip().strip("[]")
            try:
                ip = ipaddress.ip_address(name)
            except ValueError:
                if not _DNS.fullmatch(name) or len(name) > 253:
                    raise TlsError(f"tls_san {name!r} is neither a host name nor an "
                                   "IP address") from None
                if name.lower() not in dns:
                    dns.append(name.lower())
            else:
                if ip not in ips:
                    ips.append(ip)
        return cls(tuple(dns), tuple(ips))

    def covered_by(self, cert: x509.Certificate) -> bool:
        """Whether ``cert`` names every one of these."""
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        have_dns = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
        have_ips = set(san.get_values_for_type(x509.IPAddress))
        return set(self.dns) <= have_dns and set(self.ips) <= have_ips


def default_names(listen_host: str = "", extra: Iterable[str] = ()) -> SubjectNames:
    """localhost, 127.0.0.1, ::1, the host's name, a specific listening address, extras."""
    names = ["localhost", "127.0.0.1", "::1"]
    hostname = socket.gethostname()
    if hostname and _DNS.fullmatch(hostname):
        names.append(hostname)
    if listen_host and listen_host not in ("0.0.0.0", "::"):
        names.append(listen_host)
    return SubjectNames.parse([*names, *extra])


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pybuild registry"),
        x509.NameAttribute(NameOID.COMMON_NAME,
                           f"pybuild registry private CA {secrets.token_hex(4)}"),
    ])
    now = _now()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_server(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
                 names: SubjectNames) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names.dns]
    alt += [x509.IPAddress(ip) for ip in names.ips]
    common = names.dns[0] if names.dns else str(names.ips[0])
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)]))
        .issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(min(now + datetime.timedelta(days=SERVER_DAYS), ca.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False,
                                     crl_sign=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False,
                                     decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(directory / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if not cert_path.exists() and not key_path.exists():
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise TlsError(f"the private CA in {str(directory)!r} cannot be read: {exc}; move "
                       "ca.crt and ca.key away to make a new one") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsError(f"{str(key_path)!r} is not an EC key")
    return cert, key


def _server_is_current(directory: Path, ca: x509.Certificate, names: SubjectNames) -> bool:
    try:
        cert = x509.load_pem_x509_certificate((directory / "server.crt").read_bytes())
        serialization.load_pem_private_key((directory / "server.key").read_bytes(), None)
        cert.verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    return names.covered_by(cert) and cert.not_valid_after_utc - _now() > RENEW_BEFORE


def ensure_certificates(directory: Path, names: SubjectNames) -> TlsFiles:
    """The private CA and a server certificate for ``names`` in ``directory``, made or
    remade as the module docstring says."""
    with _locked(directory):
        loaded = _load_ca(directory)
        if loaded is None:
            ca, ca_key = _make_ca()
            atomic_write(directory / "ca.key", _key_pem(ca_key), 0o600)
            atomic_write(directory / "ca.crt", _cert_pem(ca), 0o644)
        else:
            ca, ca_key = loaded
        trust = directory / TRUST_DIR
        trust.mkdir(exist_ok=True)
        if _read_or_none(trust / "ca.crt") != _cert_pem(ca):
            atomic_write(trust / "ca.crt", _cert_pem(ca), 0o644)
        if _server_is_current(directory, ca, names):
            return TlsFiles(directory / "server.crt", directory / "server.key",
                            directory / "ca.crt", created=False)
        cert, key = _make_server(ca, ca_key, names)
        atomic_write(directory / "server.key", _key_pem(key), 0o600)
        atomic_write(directory / "server.crt", _cert_pem(cert), 0o644)
        return TlsFiles(directory / "server.crt", directory / "server.key",
                        directory / "ca.crt", created=True)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server SSLContext for ``cert``/``key`` that accepts TLS 1.2 and newer only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"certificate {str(cert)!r} with key {str(key)!r} cannot be used: "
                       f"{exc}") from None
    return context


def prepare(root: Path, listen_host: str, cert: Path | None, key: Path | None,
            extra_names: Iterable[str] = ()) -> TlsFiles:
    """The files to serve with: the operator's (checked) or the private CA's."""
    if cert is not None and key is not None:
        server_context(cert, key)
        return TlsFiles(cert, key)
    files = ensure_certificates(root / TLS_DIR, default_names(listen_host, extra_names))
    server_context(files.cert, files.key)
    return files


def ssl_context_factory(config: Any, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's hook: its context, raised to TLS 1.2 at least."""
    context = default()
    context.minimum_version = max(context.minimum_version, ssl.TLSVersion.TLSv1_2)
    return context


def uvicorn_options(files: TlsFiles) -> dict[str, Any]:
    """The ``uvicorn.run`` keyword arguments that serve ``files``."""
    import uvicorn

    options: dict[str, Any] = {"ssl_certfile": str(files.cert), "ssl_keyfile": str(files.key)}
    if "ssl_context_factory" in inspect.signature(uvicorn.Config.__init__).parameters:
        options["ssl_context_factory"] = ssl_context_factory
    return options


def trust_instructions(files: TlsFiles, host: str, port: int) -> str:
    """How to make docker, podman/skopeo/buildah and curl trust the private CA."""
    if files.ca is None:
        return f"registry: serving TLS with {files.cert}"
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname() or "localhost"
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    ca = files.ca
    return "\n".join([
        f"registry: serving TLS with a certificate from the private CA {ca}",
        "registry: to trust it:",
        f"  docker:  mkdir -p /etc/docker/certs.d/{address} && "
        f"cp {ca} /etc/docker/certs.d/{address}/ca.crt",
        f"  podman, skopeo, buildah:  --cert-dir {ca.parent / TRUST_DIR} (or copy it to "
        f"/etc/containers/certs.d/{address}/ca.crt)",
        f"  curl:    curl --cacert {ca} https://{address}/v2/",
    ])
