"""``pybuild login``: check credentials against a registry and store them in docker's
``config.json`` (or its credential helper), as ``docker login`` does."""

from __future__ import annotations

import argparse
import getpass
import sys

from builder.errors import BuildError
from builder.store import BuildStore
from registry.client.errors import ClientError
from registry.client.settings import load_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``login`` to the subcommands."""
    parser = sub.add_parser(
        "login", help="log in to a registry",
        description="Verify the credentials against SERVER (Docker Hub by default) and store "
                    "them in the docker config ($DOCKER_CONFIG/config.json or "
                    "~/.docker/config.json, or its credential helper).")
    parser.add_argument("server", nargs="?", metavar="SERVER",
                        help="registry HOST[:PORT] (default: docker.io)")
    parser.add_argument("-u", "--username", help="user name")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("-p", "--password", help="password (prefer --password-stdin)")
    secret.add_argument("--password-stdin", action="store_true",
                        help="read the password from standard input")
    parser.set_defaults(command_module=sys.modules[__name__])


def _username(args: argparse.Namespace) -> str:
    if args.username:
        return str(args.username)
    if args.password_stdin or not sys.stdin.isatty():
        raise BuildError("login needs a user name: give it with -u/--username")
    name = input("Username: ").strip()
    if not name:
        raise BuildError("login needs a user name")
    return name


def _password(args: argparse.Namespace) -> str:
    if args.password is not None:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.",
              file=sys.stderr)
        return str(args.password)
    if args.password_stdin:
        text = sys.stdin.read()
        password = text[:-1] if text.endswith("\n") else text
        password = password.removesuffix("\r")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
    else:
        raise BuildError("login needs a password: give it with --password-stdin")
    if not password:
        raise BuildError("login needs a non-empty password")
    return password


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Verify and store the credentials; print ``Login Succeeded``."""
    from registry.client.login import login

    username = _username(args)
    password = _password(args)
    try:
        login(args.server, username, password, load_settings())
    except ClientError as exc:
        raise BuildError(str(exc)) from None
    print("Login Succeeded")
    return 0
