"""The registry's settings: one frozen value built from defaults, a TOML file, the
environment and command-line flags, each overriding the one before.

The file holds top-level keys named like the fields (``addr = "0.0.0.0:5000"``,
``read_only = true``); the environment uses ``REGISTRY_<FIELD>`` (``REGISTRY_READ_ONLY=1``).
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

ENV_PREFIX = "REGISTRY_"
CONFIG_ENV = "REGISTRY_CONFIG"
HANDOFF_ENV = "PYBUILD_REGISTRY_SETTINGS"
MIB = 1024 * 1024
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


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
    :class:`~registry.auth.access.Authorizer` to use (empty: everyone may do everything).
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

    def __post_init__(self) -> None:
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
        """The content store (blob bytes and upload ingests)."""
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


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


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
    "manifest_cache_bytes": int, "authorizer": str,
}


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = _FIELD_TYPES.get(name)
    if kind is None:
        known = ", ".join(sorted(_FIELD_TYPES))
        raise ConfigError(f"{source}: unknown setting {name!r} (known: {known})")
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
    return _coerce_all(doc, f"config file {str(path)!r}")


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
