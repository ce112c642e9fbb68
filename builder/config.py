"""The builder's config file: build-wide settings a runner sets once for every build.

The file is TOML, found at ``$PYBUILD_CONFIG`` if set, else ``/etc/pybuild/pybuild.toml``
for root and ``$XDG_CONFIG_HOME/pybuild/pybuild.toml`` (``~/.config/…``) for anyone else. A
missing file means the defaults. Keys::

    insecure-entitlements = ["network.host", "security.insecure"]   # as buildkitd.toml

    [limits]            # defaults for the resource-limit flags of build and run
    memory = "2g"

Unknown keys are errors, so that a typo never silently drops a setting.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.entitlements import Entitlements, parse
from builder.errors import BuildError

_KEYS = ("insecure-entitlements", "limits")


@dataclass(frozen=True)
class BuilderConfig:
    """The settings of the config file: the entitlements it grants every build and the raw
    ``[limits]`` table (interpreted by the resource-limit flags' parser)."""

    path: Path | None = None
    entitlements: Entitlements = field(default_factory=Entitlements)
    limits: Mapping[str, Any] = field(default_factory=dict)


def config_path() -> Path:
    """Where the config file is looked for."""
    if os.environ.get("PYBUILD_CONFIG"):
        return Path(os.environ["PYBUILD_CONFIG"])
    from builder import rootless

    if rootless.running_as_root():
        return Path("/etc/pybuild/pybuild.toml")
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "pybuild" / "pybuild.toml"


def load(path: Path | None = None) -> BuilderConfig:
    """The config file at ``path`` (default :func:`config_path`); a missing file gives the
    defaults, a malformed one a one-line error naming the file and the key."""
    path = path or config_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return BuilderConfig()
    except (OSError, UnicodeDecodeError) as exc:
        raise BuildError(f"builder config {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(f"builder config {path}: {exc}") from None
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise BuildError(f"builder config {path}: unknown key {unknown[0]!r} "
                         f"(expected {', '.join(_KEYS)})")
    names = data.get("insecure-entitlements", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BuildError(f"builder config {path}: insecure-entitlements must be a list of "
                         "strings")
    limits = data.get("limits", {})
    if not isinstance(limits, dict):
        raise BuildError(f"builder config {path}: [limits] must be a table")
    return BuilderConfig(path=path, entitlements=parse(names, f"{path}: insecure-entitlements"),
                         limits=limits)
