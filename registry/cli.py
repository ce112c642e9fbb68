"""The ``registry`` command: ``registry serve`` runs the OCI distribution server;
``registry gc`` collects garbage (see :mod:`registry.gc`); ``registry user add|list|del``
manages the users that ``--auth basic|token`` let in (``registry user secret`` their CLI
secrets, ``registry robot`` the robot accounts of CI); ``registry policy show`` prints the
access policy, or what one user may do where; ``registry project …`` manages
projects, their members and quotas (:mod:`registry.projects.cli`); ``registry audit``
lists the audit log and ``registry webhook`` manages a project's webhooks
(:mod:`registry.audit.cli`); ``registry migrate`` creates or upgrades the metadata
database's schema (``serve`` does too, before its workers start)."""

from __future__ import annotations

import argparse
import logging.config
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.config import HANDOFF_ENV, ConfigError, Settings, load_settings
from registry.robots.commands import (
    add_robot_parser,
    add_user_secret_parser,
    run_robot,
    run_user_secret,
)

if TYPE_CHECKING:
    from registry.auth.rules import AccessPolicy


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
    serve.add_argument("--tls", action="store_const", const=True, default=None,
                       help="serve HTTPS (a private CA and certificate are made in ROOT/tls "
                       "unless --tls-cert/--tls-key are given)")
    serve.add_argument("--tls-cert", type=Path, help="the server certificate (PEM chain)")
    serve.add_argument("--tls-key", type=Path, help="the server certificate's key (PEM)")
    serve.add_argument("--tls-san", action="append", metavar="NAME",
                       help="another host name or address for the made certificate "
                       "(repeatable)")
    serve.add_argument("--auth", choices=("none", "basic", "token"),
                       help="authentication (default: token with TLS, none without)")
    user = sub.add_parser("user", help="manage the users of --auth basic|token")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="add a user (password from a prompt or stdin)")
    _common(add)
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input")
    add.add_argument("--group", action="append", default=[], help="a group (repeatable)")
    add.add_argument("--replace", action="store_true",
                     help="change the password and groups of an existing user")
    _common(user_sub.add_parser("list", help="list the users and their groups"))
    remove = user_sub.add_parser("del", help="remove a user")
    _common(remove)
    remove.add_argument("name")
    add_user_secret_parser(user_sub, _common)
    add_robot_parser(sub, _common)
    policy = sub.add_parser("policy", help="show the access policy")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    show = policy_sub.add_parser(
        "show", help="print the access rules, or what one user may do where")
    _common(show)
    who = show.add_mutually_exclusive_group()
    who.add_argument("--user", metavar="NAME", help="what this user may do where")
    who.add_argument("--anonymous", action="store_true",
                     help="what clients without credentials may do where")
    from registry.projects.cli import add_parser as add_project_parser

    add_project_parser(sub, _common)
    from registry.audit.cli import add_parsers as add_audit_parsers
    from registry.tagpolicy.commands import add_parsers as add_tagpolicy_parsers

    add_tagpolicy_parsers(sub, _common)
    add_audit_parsers(sub, _common)
    from registry.replication.cli import add_parser as add_replicate_parser

    add_replicate_parser(sub, _common)
    _common(sub.add_parser(
        "migrate", help="create or upgrade the metadata database schema (metadata_url)"))
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


def _tls_options(settings: Settings) -> dict[str, Any]:
    """Make or check the certificate, say how to trust it, and the uvicorn options."""
    from registry import tls

    if not settings.tls_enabled:
        return {}
    settings.root.mkdir(parents=True, exist_ok=True)
    try:
        files = tls.prepare(settings.root, settings.host, settings.tls_cert, settings.tls_key,
                            settings.tls_san)
    except (tls.TlsError, OSError) as exc:
        raise ConfigError(str(exc)) from None
    print(tls.trust_instructions(files, settings.host, settings.port), flush=True)
    return tls.uvicorn_options(files)


def serve(settings: Settings, options: dict[str, Any] | None = None) -> int:
    """Run the server until SIGINT/SIGTERM; ``options`` go to uvicorn (TLS)."""
    import uvicorn

    from registry.metrics import reset_directory

    settings.root.mkdir(parents=True, exist_ok=True)
    reset_directory(settings.metrics_dir)
    os.environ[HANDOFF_ENV] = settings.to_json()
    options = dict(options or {})
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

    return gc.run_cli(settings.root, argv, settings)


def prepare_metadata(settings: Settings) -> str:
    """Open the metadata store once, creating or upgrading its schema; what it is now (one
    line). ``MetadataError`` naming the setting and the cause if it cannot be used."""
    from layerstore.errors import LayerstoreError
    from registry.metadata.backends import describe, open_metadata

    try:
        store = open_metadata(settings, migrate=True)
    except LayerstoreError as exc:
        text = str(exc)
        where = describe(settings)
        raise MetadataError(text if text.startswith(where) else f"{where}: {text}") from None
    try:
        version = getattr(store, "schema_version", "?")
    finally:
        store.close()
    return f"{describe(settings)}: schema version {version}"


class MetadataError(Exception):
    """The metadata store cannot be opened; the message names the setting and the cause."""


def _migrate(settings: Settings) -> int:
    try:
        print(f"registry migrate: {prepare_metadata(settings)}")
    except MetadataError as exc:
        print(f"registry migrate: {exc}", file=sys.stderr)
        return 1
    return 0


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ValueError("no terminal to ask for the password: use --password-stdin")
    import getpass

    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password (again): "):
        raise ValueError("the passwords differ")
    return first


def _user(settings: Settings, args: argparse.Namespace) -> int:
    from layerstore.errors import LayerstoreError
    from registry.auth.shared_state import open_user_store
    from registry.auth.users import UserError

    try:
        store = open_user_store(settings, migrate=True)
    except LayerstoreError as exc:
        print(f"registry user: {exc}", file=sys.stderr)
        return 1
    where = getattr(store, "location", store.path)
    try:
        if args.user_command == "add":
            password = _read_password(args.password_stdin)
            existed = args.replace and store.get(args.name) is not None
            store.add(args.name, password, args.group, replace=args.replace)
            print(f"registry: user {args.name!r} saved in {where}")
            _audit_user(settings, "user.add", f"user={args.name} groups="
                        f"{','.join(args.group) or '-'}{' (replaced)' if existed else ''}")
        elif args.user_command == "list":
            for user in store.users():
                groups = ",".join(user.groups) or "-"
                print(f"{user.name}\t{groups}\t{user.source}")
        elif not store.remove(args.name):
            print(f"registry: no user {args.name!r} in {where}", file=sys.stderr)
            return 1
        else:
            _audit_user(settings, "user.remove", f"user={args.name}")
    except (UserError, ValueError, OSError, LayerstoreError) as exc:
        print(f"registry user: {exc}", file=sys.stderr)
        return 2
    return 0


def _audit_user(settings: Settings, action: str, detail: str) -> None:
    """Log a change of the users in the audit log (as the operating-system user)."""
    from registry import audit

    audit.change(settings, action, detail=detail)


def _policy_of(settings: Settings) -> AccessPolicy:
    from registry.auth.authorizers import with_projects
    from registry.auth.rules import AccessPolicy

    return with_projects(AccessPolicy(settings.access, settings.admins, settings.groups),
                         settings)


def policy_summary(settings: Settings) -> str:
    """The effective access policy in a line (printed when the server starts)."""
    from registry.auth.explain import summary

    if settings.authorizer:
        return f"access: decided by the authorizer {settings.authorizer}"
    if settings.auth_mode == "none":
        actions = "pull" if settings.read_only else (
            "pull, push and delete" if settings.delete_enabled else "pull and push")
        return (f"access: open (auth none): every client may {actions} every repository; "
                "the access rules are not used")
    return f"access: {summary(_policy_of(settings))} (registry policy show prints it)"


def _policy(settings: Settings, args: argparse.Namespace) -> int:
    from registry.auth.authorizers import auth_directory
    from registry.auth.explain import render
    from registry.auth.users import UserError, UserStore

    policy = _policy_of(settings)
    if settings.auth == "none" or settings.authorizer:
        print(f"note: {policy_summary(settings)}")
    elif settings.auth_mode == "none":
        print("note: this policy applies when the server authenticates (auth token, the "
              "default with --tls, or basic); without auth every client may do everything")
    who = None
    if args.anonymous:
        who = policy.principal(None)
    elif args.user is not None:
        store = UserStore(auth_directory(settings.root), settings.htpasswd)
        try:
            user = store.get(args.user)
        except UserError as exc:
            print(f"registry policy: {exc}", file=sys.stderr)
            return 2
        if user is None:
            print(f"registry policy: no user {args.user!r} in {store.path}"
                  f"{' or ' + str(settings.htpasswd) if settings.htpasswd else ''}; "
                  "showing what it would get", file=sys.stderr)
        who = policy.principal(args.user, user.groups if user is not None else ())
    print("\n".join(render(policy, who)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``registry``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if argv[:1] == ["gc"]:
        args, rest = parser.parse_known_args(argv)
    else:
        args, rest = parser.parse_args(argv), []
    if args.command in ("user", "policy", "project", "robot", "immutable", "retention",
                        "audit", "webhook", "replicate"):
        flags: dict[str, Any] = {"root": args.root}
    else:
        flags = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    try:
        settings = load_settings(args.config, os.environ, flags)
    except ConfigError as exc:
        print(f"registry: {exc}", file=sys.stderr)
        return 2
    if args.command == "gc":
        return _gc(settings, rest)
    if args.command == "user" and args.user_command == "secret":
        return run_user_secret(settings, args)
    if args.command == "user":
        return _user(settings, args)
    if args.command == "robot":
        return run_robot(settings, args)
    if args.command == "policy":
        return _policy(settings, args)
    if args.command == "project":
        from registry.projects.cli import run as run_project

        return run_project(settings, args)
    if args.command == "migrate":
        return _migrate(settings)
    if args.command in ("immutable", "retention"):
        from registry.tagpolicy import commands

        return commands.main(settings, args)
    if args.command in ("audit", "webhook"):
        from registry.audit.cli import run

        return run(settings, args)
    if args.command == "replicate":
        from registry.replication.cli import run as run_replicate

        return run_replicate(settings, args)
    logging.config.dictConfig(log_config(settings.log_level))
    if settings.metadata_url:
        # Before the authorizer: with token auth it reads the signing key from the database.
        try:
            prepare_metadata(settings)
        except MetadataError as exc:
            print(f"registry: {exc}", file=sys.stderr)
            return 1
    try:
        from registry.app import check_storage, load_authorizer

        load_authorizer(settings)
        check_storage(settings)
        from registry.proxy.service import check_mirror

        check_mirror(settings, lambda text: print(f"registry: warning: {text}", flush=True))
        options = _tls_options(settings)
        if settings.auth_mode != "none" and not settings.authorizer:
            if settings.metadata_url:
                from registry.metadata.backends import describe

                where = f"{describe(settings)} (registry user add NAME)"
            else:
                where = (f"{settings.root / 'auth' / 'users.json'} (registry user add NAME "
                         f"--root {settings.root})")
            print(f"registry: auth {settings.auth_mode}; users in {where}", flush=True)
        print(f"registry: {policy_summary(settings)}", flush=True)
    except ConfigError as exc:
        print(f"registry: {exc}", file=sys.stderr)
        return 2
    try:
        return serve(settings, options)
    except OSError as exc:
        print(f"registry: cannot serve on {settings.addr}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
