"""The registry flags of ``build``, ``pull`` and ``push``, turned into client settings."""

from __future__ import annotations

import argparse
from pathlib import Path

from builder.errors import BuildError
from registry.client.errors import ClientError
from registry.client.settings import ClientSettings, load_settings

__all__ = ["add_registry_flags", "settings_from"]


def add_registry_flags(parser: argparse.ArgumentParser) -> None:
    """``--insecure-registry`` and ``--registry-config``, shared by build, pull and push."""
    parser.add_argument("--insecure-registry", action="append", default=[],
                        metavar="HOST[:PORT]",
                        help="allow plain HTTP and unverified TLS for this registry "
                        "(repeatable)")
    parser.add_argument("--registry-config", type=Path, metavar="FILE",
                        help="daemon.json-style file with registry-mirrors and "
                        "insecure-registries ($PYBUILD_DAEMON_CONFIG, default "
                        "/etc/pybuild/daemon.json)")


def settings_from(args: argparse.Namespace) -> ClientSettings:
    """Client settings: the config file, then the command-line flags."""
    try:
        settings = load_settings(args.registry_config)
        if args.insecure_registry:
            settings = settings.with_changes(insecure_registries=(
                *settings.insecure_registries, *args.insecure_registry))
    except ClientError as exc:
        raise BuildError(str(exc)) from None
    return settings
