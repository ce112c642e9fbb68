"""The registry's settings: one frozen value built from defaults, a TOML file, the
environment and command-line flags, each overriding the one before.

The file holds top-level keys named like the fields (``addr = "0.0.0.0:5000"``,
``read_only = true``); the environment uses ``REGISTRY_<FIELD>`` (``REGISTRY_READ_ONLY=1``).
List settings take a comma-separated value there (``REGISTRY_TLS_SAN=a.example,10.0.0.5``);
``access`` and ``groups`` take JSON. The access rules are described in
:mod:`registry.auth.rules`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from registry.auth.rules import AccessRule, RuleError, parse_admins, parse_groups, parse_rules

ENV_PREFIX = "REGISTRY_"
CONFIG_ENV = "REGISTRY_CONFIG"
HANDOFF_ENV = "PYBUILD_REGISTRY_SETTINGS"
MIB = 1024 * 1024
GIB = 1024 * MIB
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
AUTH_MODES = ("none", "basic", "token")


class ConfigError(ValueError):
    """A setting is missing, unknown or malformed; the message names it and its source."""


def _default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to know; see the module docstring for the sources.

    ``addr`` is where to listen, ``root`` holds all data, ``read_only`` refuses every write,
    ``workers`` is the number of server processes, ``access_log`` logs one line per request,
    ``delete_enabled`` allows DELETE of manifests, tags and blobs, ``max_manifest_bytes``
    bounds a pushed manifest and ``manifest_cache_bytes`` the per-process memory cache of
    small immutable content (manifests, blobs up to 64 KiB). ``authorizer`` names a
    ``module:factory`` called with the settings that returns the
    :class:`~registry.auth.access.Authorizer` to use (empty: ``auth`` decides).

    TLS: ``tls`` serves HTTPS with a certificate made once from a private CA kept under
    ``root/tls`` (``tls_san``: extra host names or addresses), or with the operator's
    ``tls_cert``/``tls_key``. Authentication: ``auth`` is ``none``, ``basic`` or ``token``
    (empty: ``token`` with TLS, ``none`` without); ``token_ttl`` and ``refresh_ttl`` are the
    lifetimes in seconds of access and refresh tokens, ``token_issuer``/``token_service``
    their ``iss``/``aud``, ``token_realm`` the token endpoint's URL (empty: ``/token`` of
    the host the client reached). Users live in ``root/auth/users.json`` (``registry user``)
    and in an optional bcrypt ``htpasswd`` file; ``access``, ``groups`` and ``admins`` are
    the rules of :mod:`registry.auth.rules`. ``login_max_failures`` failed logins of one
    user from one client address within ``login_lockout`` seconds lock that user out from
    that address for that long; ``login_user_max_failures`` failed logins of one user from
    any addresses lock it out everywhere (:mod:`registry.auth.throttle`).

    Uploads: a blob upload announcing (``Content-Length``, ``Content-Range``) more than
    ``max_blob_bytes`` (0: no limit) or more than the store's free space less
    ``min_free_bytes`` is refused at once with 413 SIZE_INVALID.

    Web UI: ``ui`` serves the pages of :mod:`registry.ui` at ``/ui/`` of the same port.

    Scale-out: ``metadata_url`` names a PostgreSQL database (``postgresql://user:password@
    host:port/db``) that holds the metadata instead of SQLite under ``root``, so that any
    number of replicas can share it; empty keeps SQLite.
    """

    addr: str = "127.0.0.1:5000"
    root: Path = Path("/var/lib/registry")
    read_only: bool = False
    workers: int = dataclasses.field(default_factory=_default_workers)
    log_level: str = "info"
    access_log: bool = True
    delete_enabled: bool = True
    max_manifest_bytes: int = 4 * MIB
    manifest_cache_bytes: int = 64 * MIB
    authorizer: str = ""
    tls: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_san: tuple[str, ...] = ()
    auth: str = ""
    token_ttl: int = 300
    refresh_ttl: int = 30 * 86400
    token_issuer: str = "pybuild-registry"
    token_service: str = "pybuild-registry"
    token_realm: str = ""
    htpasswd: Path | None = None
    access: tuple[AccessRule, ...] = ()
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()
    admins: tuple[str, ...] = ()
    login_max_failures: int = 10
    login_lockout: int = 60
    # Login throttling per user, and upload limits (registry.handlers.limits).
    login_user_max_failures: int = 100
    max_blob_bytes: int = 0
    min_free_bytes: int = GIB
    # End of login throttling and upload limits.
    # --- Scale-out backing (replicas sharing one database); see check_scaleout below.
    metadata_url: str = ""
    # Storage backend (see STORAGE_FIELDS): ``storage`` is ``filesystem`` (blobs under
    # ``root/content``) or ``s3``; the ``[s3]`` table of the file sets the ``s3_*`` fields.
    storage: str = "filesystem"
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_path_style: bool = False
    s3_redirect: bool = False
    # Audit log and webhooks (registry.audit, registry.webhooks): events older than
    # ``audit_max_age`` days are removed (0: kept forever); a webhook delivery is tried up to
    # ``webhook_max_attempts`` times, ``webhook_retry_seconds`` apart, doubling each time.
    audit_max_age: int = 0
    webhook_max_attempts: int = 8
    webhook_retry_seconds: int = 10
    # The web UI (registry.ui) at /ui/ of the registry's port; false serves the API only.
    ui: bool = True

    def __post_init__(self) -> None:
        check_scaleout(self)
        object.__setattr__(self, "root", Path(self.root))
        split_addr(self.addr)
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, not {self.workers}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, "
                              f"not {self.log_level!r}")
        if self.authorizer and ":" not in self.authorizer:
            raise ConfigError(f"authorizer must be 'module:factory', not {self.authorizer!r}")
        for name in ("max_manifest_bytes", "manifest_cache_bytes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")
        if self.auth and self.auth not in AUTH_MODES:
            raise ConfigError(f"auth must be one of {', '.join(AUTH_MODES)}, not {self.auth!r}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert and tls_key go together: give both or neither")
        for name in ("token_ttl", "refresh_ttl", "login_max_failures", "login_lockout"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.token_realm and not self.token_realm.startswith(("https://", "http://")):
            raise ConfigError(f"token_realm must be an http(s) URL, not {self.token_realm!r}")
        _check_limits(self)
        _check_storage(self)
        _check_audit(self)

    @property
    def tls_enabled(self) -> bool:
        """Whether the server speaks HTTPS."""
        return self.tls or self.tls_cert is not None

    @property
    def auth_mode(self) -> str:
        """``none``, ``basic`` or ``token``: ``auth``, or its default for ``tls``."""
        return self.auth or ("token" if self.tls_enabled else "none")

    @property
    def host(self) -> str:
        """The address to listen on."""
        return split_addr(self.addr)[0]

    @property
    def port(self) -> int:
        """The TCP port to listen on."""
        return split_addr(self.addr)[1]

    @property
    def content_root(self) -> Path:
        """The filesystem storage driver's root (blob bytes and the bytes of upload sessions)."""
        return self.root / "content"

    @property
    def metadata_path(self) -> Path:
        """The metadata database."""
        return self.root / "metadata.db"

    @property
    def metrics_dir(self) -> Path:
        """Where each server process leaves its counters for ``/metrics`` to add up."""
        return self.root / "run" / "metrics"

    def to_json(self) -> str:
        """The settings as JSON (handed to worker processes)."""
        return json.dumps({f.name: _plain(getattr(self, f.name)) for f in fields(self)})

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """The inverse of :meth:`to_json`."""
        return cls(**_coerce_all(json.loads(text), "handed-over settings"))


# Storage backend settings.

STORAGE_BACKENDS = ("filesystem", "s3")
STORAGE_FIELDS: dict[str, Any] = {
    "storage": str, "s3_endpoint": str, "s3_region": str, "s3_bucket": str,
    "s3_prefix": str, "s3_path_style": bool, "s3_redirect": bool,
}


def _check_storage(settings: Settings) -> None:
    if settings.storage not in STORAGE_BACKENDS:
        raise ConfigError(f"storage must be one of {', '.join(STORAGE_BACKENDS)}, "
                          f"not {settings.storage!r}")
    if settings.storage == "s3" and not settings.s3_bucket:
        raise ConfigError("storage = \"s3\" needs s3.bucket (REGISTRY_S3_BUCKET)")
    if settings.s3_endpoint and not settings.s3_endpoint.startswith(("https://", "http://")):
        raise ConfigError(f"s3.endpoint must be an http(s) URL, not {settings.s3_endpoint!r}")
    if settings.s3_prefix.startswith("/") or settings.s3_prefix.endswith("/"):
        raise ConfigError(f"s3.prefix must not start or end with '/': {settings.s3_prefix!r}")


def _flatten_tables(doc: dict[str, Any], source: str) -> dict[str, Any]:
    """Turn the ``[s3]`` table of a settings file into ``s3_*`` settings."""
    table = doc.pop("s3", None)
    if table is None:
        return doc
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: s3 must be a table ([s3]), not {table!r}")
    for key, value in table.items():
        doc[f"s3_{key}"] = value
    return doc


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, AccessRule):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def split_addr(addr: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as a pair; ConfigError if malformed."""
    if not isinstance(addr, str):
        raise ConfigError(f"addr must be a string like 127.0.0.1:5000, not {addr!r}")
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"addr {addr!r} must be HOST:PORT with a port in 1..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


_FIELD_TYPES: dict[str, Any] = {
    "addr": str, "root": Path, "read_only": bool, "workers": int, "log_level": str,
    "access_log": bool, "delete_enabled": bool, "max_manifest_bytes": int,
    "manifest_cache_bytes": int, "authorizer": str, "tls": bool, "tls_cert": "path?",
    "tls_key": "path?", "tls_san": "strings", "auth": str, "token_ttl": int,
    "refresh_ttl": int, "token_issuer": str, "token_service": str, "token_realm": str,
    "htpasswd": "path?", "access": parse_rules, "groups": parse_groups,
    "admins": parse_admins, "login_max_failures": int, "login_lockout": int,
    **STORAGE_FIELDS,
}


# Login throttling per user, and upload limits.
_FIELD_TYPES.update({"login_user_max_failures": int, "max_blob_bytes": int,
                     "min_free_bytes": int})


def _check_limits(settings: Settings) -> None:
    if settings.login_user_max_failures < 1:
        raise ConfigError("login_user_max_failures must be at least 1, not "
                          f"{settings.login_user_max_failures}")
    for name, zero in (("max_blob_bytes", "no limit"), ("min_free_bytes", "no margin")):
        value = getattr(settings, name)
        if value < 0:
            raise ConfigError(f"{name} must not be negative (0: {zero}), not {value}")
# End of login throttling and upload limits.


# Audit log and webhooks.
_FIELD_TYPES.update({"audit_max_age": int, "webhook_max_attempts": int,
                     "webhook_retry_seconds": int})


def _check_audit(settings: Settings) -> None:
    if settings.audit_max_age < 0:
        raise ConfigError(f"audit_max_age must not be negative (0: keep forever), not "
                          f"{settings.audit_max_age}")
    for name in ("webhook_max_attempts", "webhook_retry_seconds"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"{name} must be at least 1, not {getattr(settings, name)}")
# End of audit log and webhooks.


# The web UI.
_FIELD_TYPES.update({"ui": bool})


# --- Scale-out backing settings.
_FIELD_TYPES.update({"metadata_url": str})
METADATA_URL_SCHEMES = ("postgresql://", "postgres://")


def check_scaleout(settings: Settings) -> None:
    """ConfigError unless the scale-out settings are well formed."""
    url = settings.metadata_url
    if not isinstance(url, str):
        raise ConfigError(f"metadata_url must be a string, not {url!r}")
    if url and not url.startswith(METADATA_URL_SCHEMES):
        raise ConfigError("metadata_url must be empty (SQLite under root) or a "
                          f"postgresql:// URL, not {url.split('@')[-1]!r}")
# --- End of scale-out backing settings.


def _coerce_special(name: str, kind: Any, value: Any, source: str) -> Any:
    if kind == "path?":
        if value is None or value == "":
            return None
        if not isinstance(value, str | Path):
            raise ConfigError(f"{source}: {name} must be a path, not {value!r}")
        return Path(value)
    if isinstance(value, str):
        if name in ("access", "groups"):
            try:
                value = json.loads(value)
            except ValueError:
                raise ConfigError(f"{source}: {name} must be JSON here") from None
        else:
            value = [v.strip() for v in value.split(",") if v.strip()]
    if kind == "strings":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{source}: {name} must be a list of strings, not {value!r}")
        return tuple(value)
    try:
        return kind(value)
    except RuleError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = _FIELD_TYPES.get(name)
    if kind is None:
        known = ", ".join(sorted(_FIELD_TYPES))
        raise ConfigError(f"{source}: unknown setting {name!r} (known: {known})")
    if not isinstance(kind, type):
        return _coerce_special(name, kind, value, source)
    if isinstance(value, str) and kind is not str and kind is not Path:
        text = value.strip().lower()
        if kind is bool:
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ConfigError(f"{source}: {name} must be true or false, not {value!r}")
        try:
            return int(text.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{source}: {name} must be an integer, not {value!r}") from None
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"{source}: {name} must be true or false, not {value!r}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{source}: {name} must be an integer, not {value!r}")
    if kind in (str, Path) and not isinstance(value, str | Path):
        raise ConfigError(f"{source}: {name} must be a string, not {value!r}")
    if kind is Path:
        return Path(value)
    if name == "log_level":
        return str(value).lower()
    return value


def _coerce_all(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    return {k: _coerce(k, v, source) for k, v in values.items()}


def read_file(path: Path) -> dict[str, Any]:
    """The settings of a TOML file, checked; ConfigError naming the file otherwise."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r}: not valid TOML: {exc}") from None
    source = f"config file {str(path)!r}"
    return _coerce_all(_flatten_tables(doc, source), source)


def read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``REGISTRY_<FIELD>`` variables that name a setting (others are ignored)."""
    out: dict[str, Any] = {}
    for name in _FIELD_TYPES:
        key = ENV_PREFIX + name.upper()
        if key in environ:
            out[name] = _coerce(name, environ[key], f"environment {key}")
    return out


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults, then the config file (``config_file`` or ``$REGISTRY_CONFIG``), then the
    environment, then ``flags`` (entries whose value is ``None`` are ignored)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if config_file is None and environ.get(CONFIG_ENV):
        config_file = Path(environ[CONFIG_ENV])
    if config_file is not None:
        values.update(read_file(config_file))
    values.update(read_environment(environ))
    values.update(_coerce_all({k: v for k, v in (flags or {}).items() if v is not None},
                              "command line"))
    try:
        return Settings(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
