"""The ``registry`` command: ``registry serve`` runs the OCI distribution server;
``registry gc`` collects garbage (see :mod:`registry.gc`)."""

from __future__ import annotations

import argparse
import logging.config
import os
import sys
from pathlib import Path
from typing import Any

from registry.config import HANDOFF_ENV, ConfigError, Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="registry",
        description="An OCI distribution v2 registry: serve it, collect its garbage.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the registry server")
    _common(serve)
    serve.add_argument("--addr", help="HOST:PORT to listen on (default 127.0.0.1:5000)")
    serve.add_argument("--workers", type=int, help="server processes (default: one per CPU)")
    serve.add_argument("--read-only", action="store_const", const=True, default=None,
                       help="refuse every write with UNSUPPORTED")
    serve.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"))
    serve.add_argument("--no-access-log", dest="access_log", action="store_const",
                       const=False, default=None, help="do not log one line per request")
    gc = sub.add_parser("gc", help="garbage-collect unreferenced blobs and manifests",
                        add_help=False)
    _common(gc)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, help="storage root (default /var/lib/registry)")
    parser.add_argument("--config", type=Path, help="TOML settings file ($REGISTRY_CONFIG)")


def log_config(level: str) -> dict[str, Any]:
    """The logging setup of the server and its workers: one line per record on stderr."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain",
                                "stream": "ext://sys.stderr"}},
        "loggers": {
            "registry": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


def serve(settings: Settings) -> int:
    """Run the server until SIGINT/SIGTERM."""
    import uvicorn

    from registry.metrics import reset_directory

    settings.root.mkdir(parents=True, exist_ok=True)
    reset_directory(settings.metrics_dir)
    os.environ[HANDOFF_ENV] = settings.to_json()
    options: dict[str, Any] = {}
    for module, key, value in (("uvloop", "loop", "uvloop"), ("httptools", "http", "httptools")):
        try:
            __import__(module)
            options[key] = value
        except ImportError:
            pass
    uvicorn.run(
        "registry.app:app_factory", factory=True, host=settings.host, port=settings.port,
        workers=settings.workers, log_config=log_config(settings.log_level),
        access_log=False, server_header=False, timeout_graceful_shutdown=10, **options,
    )
    return 0


def _gc(settings: Settings, argv: list[str]) -> int:
    from registry import gc

    return gc.run_cli(settings.root, argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``registry``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if argv[:1] == ["gc"]:
        args, rest = parser.parse_known_args(argv)
    else:
        args, rest = parser.parse_args(argv), []
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    try:
        settings = load_settings(args.config, os.environ, flags)
    except ConfigError as exc:
        print(f"registry: {exc}", file=sys.stderr)
        return 2
    if args.command == "gc":
        return _gc(settings, rest)
    logging.config.dictConfig(log_config(settings.log_level))
    try:
        from registry.app import load_authorizer

        load_authorizer(settings)
    except ConfigError as exc:
        print(f"registry: {exc}", file=sys.stderr)
        return 2
    try:
        return serve(settings)
    except OSError as exc:
        print(f"registry: cannot serve on {settings.addr}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
