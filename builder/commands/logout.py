"""``pybuild logout``: forget the stored credentials of a registry, as ``docker logout``."""

from __future__ import annotations

import argparse
import sys

from builder.errors import BuildError
from builder.store import BuildStore
from registry.client.errors import ClientError
from registry.client.settings import load_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``logout`` to the subcommands."""
    parser = sub.add_parser(
        "logout", help="log out from a registry",
        description="Remove the credentials of SERVER (Docker Hub by default) from the docker "
                    "config or its credential helper.")
    parser.add_argument("server", nargs="?", metavar="SERVER",
                        help="registry HOST[:PORT] (default: docker.io)")
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Erase the credentials and say so."""
    from registry.client.login import logout

    try:
        registry, removed = logout(args.server, load_settings())
    except ClientError as exc:
        raise BuildError(str(exc)) from None
    if removed:
        print(f"Removing login credentials for {registry}")
    else:
        print(f"Not logged in to {registry}")
    return 0
