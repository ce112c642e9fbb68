"""Client settings from a ``daemon.json``-style file, insecure-registry matching, and the
TLS trust a certs directory gives."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest

from registry.client import ClientSettings, ConfigurationError, load_settings
from registry.client.transport import tls_context

pytestmark = pytest.mark.unit


def test_load_a_daemon_json(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({
        "registry-mirrors": ["https://mirror.example/", "http://10.0.0.5:5000"],
        "insecure-registries": ["registry.local:5000", "10.0.0.0/8", "http://old.example"],
        "max-concurrent-downloads": 6, "log-driver": "journald", "data-root": "/srv/docker",
    }))
    settings = load_settings(path, environ={})
    assert settings.mirrors == ("https://mirror.example", "http://10.0.0.5:5000")
    assert settings.insecure_registries == ("registry.local:5000", "10.0.0.0/8",
                                            "old.example")
    assert settings.max_concurrency == 6
    assert load_settings(environ={"PYBUILD_DAEMON_CONFIG": str(path)}) == settings
    assert load_settings(path, environ={}, max_concurrency=2).max_concurrency == 2


def test_missing_default_is_fine_but_a_named_file_is_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("registry.client.settings.DEFAULT_DAEMON_CONFIG",
                        tmp_path / "absent.json")
    assert load_settings(environ={}) == ClientSettings()
    for environ, path in [({}, tmp_path / "nope.json"),
                          ({"PYBUILD_DAEMON_CONFIG": str(tmp_path / "nope.json")}, None)]:
        with pytest.raises(ConfigurationError) as err:
            load_settings(path, environ=environ)
        assert "nope.json" in str(err.value) and "does not exist" in str(err.value)


@pytest.mark.parametrize(("doc", "fragment"), [
    ("{", "not valid JSON"),
    ("[]", "expected a JSON object"),
    ('{"registry-mirrors": "https://m"}', "'registry-mirrors' must be a list of strings"),
    ('{"registry-mirrors": ["ftp://m"]}', "must be an http:// or https:// URL"),
    ('{"registry-mirrors": ["https://u:p@m"]}', "must not hold credentials"),
    ('{"insecure-registries": [5]}', "'insecure-registries' must be a list of strings"),
    ('{"insecure-registries": ["10.0.0.0/99"]}', "not a CIDR range"),
    ('{"insecure-registries": ["host:port"]}', "must be HOST[:PORT]"),
    ('{"max-concurrent-downloads": 0}', "must be a positive integer"),
])
def test_bad_files_are_clear_errors(tmp_path: Path, doc: str, fragment: str) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(doc)
    with pytest.raises(ConfigurationError) as err:
        load_settings(path, environ={})
    assert fragment in str(err.value) and str(path) in str(err.value)


def test_insecure_matching() -> None:
    settings = ClientSettings(insecure_registries=("registry.local:5000", "plain.example",
                                                   "192.168.0.0/16"))
    assert settings.is_insecure("registry.local:5000")
    assert not settings.is_insecure("registry.local:5001")
    assert settings.is_insecure("plain.example") and settings.is_insecure("plain.example:80")
    assert settings.is_insecure("192.168.3.4:5000") and settings.is_insecure("192.168.3.4")
    assert not settings.is_insecure("10.1.1.1:5000")
    strict = ClientSettings(insecure_registries=settings.insecure_registries,
                            loopback_insecure=False)
    assert strict.is_insecure("localhost:5000") is False
    loopback = ClientSettings(insecure_registries=("127.0.0.0/8",), loopback_insecure=False)
    assert loopback.is_insecure("localhost:5000") and loopback.is_insecure("127.0.0.1:1")
    assert not ClientSettings(loopback_insecure=False).is_insecure("127.0.0.1:5000")


def test_loopback_registries_are_insecure_by_default_as_in_docker() -> None:
    settings = ClientSettings()
    for host in ("127.0.0.1:5000", "127.1.2.3", "localhost:5000", "LOCALHOST", "[::1]:5000",
                 "::1"):
        assert settings.is_insecure(host), host
    for host in ("10.0.0.1:5000", "[::2]:5000", "localhost.example:5000", "128.0.0.1"):
        assert not settings.is_insecure(host), host


def test_tls_trust_from_the_certs_directory(tmp_path: Path) -> None:
    from registry.tls import default_names, ensure_certificates

    files = ensure_certificates(tmp_path / "tls", default_names("127.0.0.1"))
    assert files.ca is not None
    certs = tmp_path / "certs.d"
    (certs / "r.example:443").mkdir(parents=True)
    (certs / "r.example:443" / "ca.crt").write_bytes(files.ca.read_bytes())
    settings = ClientSettings(certs_dir=certs)
    system = ssl.create_default_context().cert_store_stats()["x509_ca"]
    trusting = tls_context("r.example:443", settings)
    assert trusting.cert_store_stats()["x509_ca"] == system + 1
    assert tls_context("other:443", settings).cert_store_stats()["x509_ca"] == system
    assert trusting.verify_mode == ssl.CERT_REQUIRED and trusting.check_hostname
    lax = tls_context("r.example:443", ClientSettings(certs_dir=certs,
                                                       insecure_registries=("r.example",)))
    assert lax.verify_mode == ssl.CERT_NONE and not lax.check_hostname
    (certs / "r.example:443" / "client.cert").write_bytes(files.cert.read_bytes())
    with pytest.raises(ConfigurationError) as err:
        tls_context("r.example:443", settings)
    assert "client.key" in str(err.value)
    (certs / "r.example:443" / "client.key").write_bytes(b"not a key")
    with pytest.raises(ConfigurationError) as err:
        tls_context("r.example:443", settings)
    assert "client.cert" in str(err.value)
    (certs / "r.example:443" / "client.key").write_bytes(files.key.read_bytes())
    tls_context("r.example:443", settings)
