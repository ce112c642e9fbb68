"""Registry credentials in docker's ``config.json``, shared with docker.

The file is ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``::

    {"auths": {"registry.example:5000": {"auth": "<base64 user:password>"},
               "https://index.docker.io/v1/": {"identitytoken": "…"}},
     "credsStore": "pass",
     "credHelpers": {"registry.example:5000": "ecr-login"}}

A registry named in ``credHelpers`` uses the program ``docker-credential-<helper>``; the
others use ``credsStore``'s program when it is set, else ``auths``. The programs speak the
docker credential-helper protocol: ``get`` reads the server URL on stdin and prints
``{"ServerURL", "Username", "Secret"}``; ``store`` reads that JSON; ``erase`` reads the
server URL. A ``Username`` of ``<token>`` means ``Secret`` is an identity (refresh) token.
Docker Hub is stored under ``https://index.docker.io/v1/`` as docker does.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from layerstore.fsutil import atomic_write
from registry.client.errors import ConfigurationError
from registry.client.reference import DEFAULT_REGISTRY, normalize_registry

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
CONFIG_ENV = "DOCKER_CONFIG"
HELPER_PREFIX = "docker-credential-"
TOKEN_USERNAME = "<token>"
HELPER_TIMEOUT = 60.0


@dataclass(frozen=True)
class Credentials:
    """A user name and password, or an identity token (an OAuth2 refresh token)."""

    username: str = ""
    password: str = ""
    identity_token: str = ""

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***, identity_token=***)"


class CredentialSource(Protocol):
    """Where the transport finds the credentials of a registry."""

    def lookup(self, registry: str) -> Credentials | None:
        """The credentials of ``registry`` (``HOST[:PORT]``); ``None`` when there are none."""
        ...


def default_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``."""
    directory = os.environ.get(CONFIG_ENV)
    return Path(directory) / "config.json" if directory else (
        Path.home() / ".docker" / "config.json")


def config_key(registry: str) -> str:
    """The key docker files ``registry``'s credentials under."""
    return DOCKER_HUB_KEY if normalize_registry(registry) == DEFAULT_REGISTRY else registry


def _hostname_of_key(key: str) -> str:
    """docker's ``ConvertToHostname``: ``https://host:5000/v1/`` → ``host:5000``."""
    for scheme in ("http://", "https://"):
        key = key.removeprefix(scheme)
    return normalize_registry(key.split("/", 1)[0])


def _decode_auth(value: str, where: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ConfigurationError(f"{where}: 'auth' is not base64 of user:password") from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise ConfigurationError(f"{where}: 'auth' does not hold user:password")
    return user, password


class DockerConfig:
    """One ``config.json`` file (the path is fixed at construction; reads are fresh)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_config_path()

    def read(self) -> dict[str, Any]:
        """The whole document (``{}`` when the file does not exist)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigurationError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            doc = json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"{self.path} is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ConfigurationError(f"{self.path}: expected a JSON object")
        for name in ("auths", "credHelpers"):
            if not isinstance(doc.get(name, {}), dict):
                raise ConfigurationError(f"{self.path}: {name!r} must be an object")
        if not isinstance(doc.get("credsStore", ""), str):
            raise ConfigurationError(f"{self.path}: 'credsStore' must be a string")
        return doc

    def write(self, doc: dict[str, Any]) -> None:
        """Replace the file atomically, readable by its owner only."""
        directory = self.path.parent
        if not directory.is_dir():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = (json.dumps(doc, indent="\t") + "\n").encode()
        try:
            atomic_write(self.path, data, mode=0o600)
        except OSError as exc:
            raise ConfigurationError(f"cannot write {self.path}: {exc.strerror}") from None

    def helper_for(self, registry: str, doc: dict[str, Any] | None = None) -> str | None:
        """The credential helper suffix ``registry`` uses (``credHelpers``, else
        ``credsStore``), or ``None`` for the file itself."""
        doc = self.read() if doc is None else doc
        helpers: dict[str, Any] = doc.get("credHelpers", {})
        wanted = normalize_registry(registry)
        for key, helper in helpers.items():
            if key == registry or _hostname_of_key(key) == wanted:
                if not isinstance(helper, str) or not helper:
                    raise ConfigurationError(f"{self.path}: credHelpers[{key!r}] must be a "
                                             "helper name")
                return helper
        store = doc.get("credsStore", "")
        return store or None

    def lookup(self, registry: str) -> Credentials | None:
        """The credentials of ``registry``; ``None`` when none are stored."""
        doc = self.read()
        helper = self.helper_for(registry, doc)
        if helper is not None:
            return helper_get(helper, config_key(registry))
        auths: dict[str, Any] = doc.get("auths", {})
        key = config_key(registry)
        entry = auths.get(key)
        if entry is None:
            wanted = normalize_registry(registry)
            entry = next((v for k, v in auths.items() if _hostname_of_key(k) == wanted), None)
        if entry is None:
            return None
        where = f"{self.path}: auths[{key!r}]"
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{where} must be an object")
        user, password = str(entry.get("username", "")), str(entry.get("password", ""))
        if entry.get("auth"):
            user, password = _decode_auth(str(entry["auth"]), where)
        token = str(entry.get("identitytoken", "") or "")
        if not (user or password or token):
            return None
        return Credentials(user, password, token)

    def store(self, registry: str, username: str, password: str) -> None:
        """Record credentials for ``registry`` (through its helper when it has one)."""
        doc = self.read()
        key = config_key(registry)
        auths = doc.setdefault("auths", {})
        helper = self.helper_for(registry, doc)
        if helper is not None:
            helper_store(helper, key, username, password)
            auths[key] = {}
        else:
            token = base64.b64encode(f"{username}:{password}".encode()).decode()
            auths[key] = {"auth": token}
        self.write(doc)

    def erase(self, registry: str) -> bool:
        """Forget ``registry``'s credentials; whether there were any in the file."""
        doc = self.read()
        helper = self.helper_for(registry, doc)
        if helper is not None:
            helper_erase(helper, config_key(registry))
        auths: dict[str, Any] = doc.get("auths", {})
        wanted = normalize_registry(registry)
        keys = [k for k in auths if k == registry or _hostname_of_key(k) == wanted]
        for k in keys:
            del auths[k]
        if keys:
            self.write(doc)
        return bool(keys)


def _run_helper(helper: str, action: str, stdin: str) -> subprocess.CompletedProcess[str]:
    program = HELPER_PREFIX + helper
    try:
        return subprocess.run([program, action], input=stdin, capture_output=True, text=True,
                              timeout=HELPER_TIMEOUT, check=False)
    except FileNotFoundError:
        raise ConfigurationError(f"credential helper {program!r} is not on PATH (named in "
                                 "credsStore or credHelpers of the docker config)") from None
    except subprocess.TimeoutExpired:
        raise ConfigurationError(f"credential helper {program} {action} did not answer "
                                 f"within {HELPER_TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot run credential helper {program}: "
                                 f"{exc.strerror}") from None


def _helper_failure(helper: str, action: str, proc: subprocess.CompletedProcess[str]
                    ) -> ConfigurationError:
    output = (proc.stdout.strip() or proc.stderr.strip())[:300]
    return ConfigurationError(f"credential helper {HELPER_PREFIX}{helper} {action} failed "
                              f"(exit {proc.returncode}): {output}")


def helper_get(helper: str, server: str) -> Credentials | None:
    """Ask ``docker-credential-<helper>`` for ``server``'s credentials."""
    proc = _run_helper(helper, "get", server)
    if proc.returncode != 0:
        if "credentials not found" in (proc.stdout + proc.stderr).lower():
            return None
        raise _helper_failure(helper, "get", proc)
    try:
        doc = json.loads(proc.stdout)
        user, secret = str(doc.get("Username", "")), str(doc.get("Secret", ""))
    except (ValueError, AttributeError):
        raise ConfigurationError(f"credential helper {HELPER_PREFIX}{helper} get printed no "
                                 "JSON object with Username and Secret") from None
    if user == TOKEN_USERNAME:
        return Credentials(identity_token=secret)
    if not (user or secret):
        return None
    return Credentials(user, secret)


def helper_store(helper: str, server: str, username: str, secret: str) -> None:
    """Hand credentials to ``docker-credential-<helper> store``."""
    doc = json.dumps({"ServerURL": server, "Username": username, "Secret": secret})
    proc = _run_helper(helper, "store", doc)
    if proc.returncode != 0:
        raise _helper_failure(helper, "store", proc)


def helper_erase(helper: str, server: str) -> None:
    """Ask ``docker-credential-<helper>`` to forget ``server`` (absent is fine)."""
    proc = _run_helper(helper, "erase", server)
    if proc.returncode != 0 and "not found" not in (proc.stdout + proc.stderr).lower():
        raise _helper_failure(helper, "erase", proc)


def lookup(registry: str, config: Path | None = None) -> Credentials | None:
    """The stored credentials of ``registry`` (``HOST[:PORT]`` or ``docker.io``)."""
    return DockerConfig(config).lookup(registry)


def store(registry: str, username: str, password: str, config: Path | None = None) -> None:
    """Store credentials for ``registry`` in the docker config (or its helper)."""
    DockerConfig(config).store(registry, username, password)


def erase(registry: str, config: Path | None = None) -> bool:
    """Erase ``registry``'s credentials; whether the config file held any."""
    return DockerConfig(config).erase(registry)


__all__ = ["DOCKER_HUB_KEY", "CredentialSource", "Credentials", "DockerConfig", "config_key",
           "default_config_path", "erase", "lookup", "store"]
