"""``registry robot create|list|disable|enable|delete|rotate`` and ``registry user secret
create|list|revoke``: the command-line side of :class:`~registry.robots.service.RobotService`.

A secret is printed once (``--json`` for scripts); a bad argument is a one-line error
naming it, exit status 2, and nothing stored changes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from registry.config import Settings
from registry.robots.service import Issued, ProjectCheck, RobotService, open_robot_store
from registry.robots.values import ROBOT_PREFIX, Robot, RobotError, RobotNotFound, robot_name

Common = Callable[[argparse.ArgumentParser], None]


def add_robot_parser(sub: argparse._SubParsersAction, common: Common) -> None:
    """The ``robot`` command and its subcommands."""
    robot = sub.add_parser("robot", help="manage robot accounts for CI (robot$PROJECT+NAME)")
    robot_sub = robot.add_subparsers(dest="robot_command", required=True)
    create = robot_sub.add_parser("create", help="make a robot account; prints its secret once")
    common(create)
    create.add_argument("name", metavar="NAME", help="the robot's name within its project")
    create.add_argument("--project", required=True, help="the project it works in")
    create.add_argument("--actions", required=True,
                        help="what it may do there: a comma-separated list of pull, push, "
                        "delete")
    create.add_argument("--expires", metavar="DAYS",
                        help="days until it expires (default: never)")
    create.add_argument("--description", default="", help="a note about what it is for")
    _secret_flags(create)
    listing = robot_sub.add_parser("list", help="list the robot accounts")
    common(listing)
    listing.add_argument("--project", help="only this project's robots")
    listing.add_argument("--json", action="store_true", help="print JSON")
    for verb, text in (("disable", "refuse its logins until enabled again"),
                       ("enable", "let a disabled robot log in again"),
                       ("delete", "delete a robot account"),
                       ("rotate", "give it a new secret (printed once); the old one stops "
                        "working")):
        cmd = robot_sub.add_parser(verb, help=text)
        common(cmd)
        _robot_name(cmd)
        if verb == "rotate":
            _secret_flags(cmd)


def _robot_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME",
                        help="robot$PROJECT+NAME, or NAME with --project")
    parser.add_argument("--project", help="the project of a short NAME")


def _secret_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--secret-stdin", action="store_true",
                        help="take the secret from the first line of standard input instead "
                        "of making a random one (at least 16 characters)")
    parser.add_argument("--json", action="store_true",
                        help="print the name and secret as JSON (for scripts)")


def add_user_secret_parser(user_sub: argparse._SubParsersAction, common: Common) -> None:
    """``user secret create|list|revoke``."""
    secret = user_sub.add_parser("secret", help="manage a user's revocable CLI secrets")
    secret_sub = secret.add_subparsers(dest="secret_command", required=True)
    create = secret_sub.add_parser(
        "create", help="make a CLI secret (a password for scripts); prints it once")
    common(create)
    create.add_argument("user", metavar="USER")
    create.add_argument("--name", dest="label", help="a label to tell it apart")
    create.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    listing = secret_sub.add_parser("list", help="list a user's CLI secrets (not the secrets)")
    common(listing)
    listing.add_argument("user", metavar="USER", nargs="?")
    listing.add_argument("--json", action="store_true", help="print JSON")
    revoke = secret_sub.add_parser("revoke", help="revoke a CLI secret")
    common(revoke)
    revoke.add_argument("user", metavar="USER")
    revoke.add_argument("--name", dest="label", required=True,
                        help="the label (or id) of the secret")


def _read_secret(args: argparse.Namespace) -> str | None:
    if not getattr(args, "secret_stdin", False):
        return None
    secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        raise RobotError("--secret-stdin: the secret on standard input is empty")
    return secret


def _full_name(args: argparse.Namespace) -> str:
    if args.name.startswith(ROBOT_PREFIX):
        if args.project is not None and not args.name.startswith(
                f"{ROBOT_PREFIX}{args.project}+"):
            raise RobotError(f"--project {args.project!r} does not match NAME {args.name!r}")
        return str(args.name)
    if args.project is None:
        raise RobotError(f"NAME {args.name!r}: give robot$PROJECT+NAME, or --project")
    return robot_name(args.project, args.name)


def _print_issued(issued: Issued, as_json: bool, what: str) -> None:
    if as_json:
        print(json.dumps(issued.to_json(), indent=2))
        return
    print(what)
    print(f"name:   {issued.name}")
    print(f"secret: {issued.secret}")
    print("The secret is shown this once: store it now (e.g. in your CI's secret variables).")


def _describe(robot: Robot) -> str:
    expires = robot.to_json()["expires_at"] or "never"
    return (f"{robot.full_name}\t{','.join(robot.actions)}\t{robot.state()}\t"
            f"expires {expires}\t{robot.description}").rstrip()


def service_of(settings: Settings, project_check: ProjectCheck | None = None
               ) -> RobotService:
    """The robot service of ``settings`` (creating the store's schema if needed)."""
    from registry.audit import change_recorder
    from registry.auth.shared_state import open_user_store

    users = open_user_store(settings, migrate=True)
    return RobotService(open_robot_store(settings, migrate=True), project_check,
                        lambda name: users.get(name) is not None, change_recorder(settings))


def project_check(settings: Settings) -> ProjectCheck:
    """When a project of the project store of ``settings`` was made (``None``: no such
    project)."""
    from registry.projects.backends import open_project_store

    return project_made_in(open_project_store(settings, migrate=True))


def project_made_in(store: Any) -> ProjectCheck:
    """When a project of ``store`` (a project store) was made, read from the store."""

    def made(name: str) -> float | None:
        found = store.get(name)
        return None if found is None else float(found.created_at)

    return made


def run_robot(settings: Settings, args: argparse.Namespace) -> int:
    """``registry robot …``; the exit status."""
    try:
        service = service_of(settings, project_check(settings)
                             if args.robot_command == "create" else None)
        where = service.store.location
        command = args.robot_command
        if command == "create":
            issued = service.create(args.project, args.name, args.actions, args.expires,
                                    secret=_read_secret(args), description=args.description)
            _print_issued(issued, args.json, f"registry: robot {issued.name!r} saved in {where}")
        elif command == "list":
            robots = service.robots(args.project)
            if args.json:
                print(json.dumps([r.to_json() for r in robots], indent=2))
            for robot in robots if not args.json else ():
                print(_describe(robot))
        elif command in ("disable", "enable"):
            robot = service.set_disabled(_full_name(args), command == "disable")
            print(f"registry: robot {robot.full_name!r} {command}d")
        elif command == "delete":
            name = _full_name(args)
            service.delete(name)
            print(f"registry: robot {name!r} deleted")
        else:
            issued = service.rotate(_full_name(args), secret=_read_secret(args))
            _print_issued(issued, args.json, f"registry: robot {issued.name!r} has a new "
                          "secret; the old one no longer works")
    except RobotNotFound as exc:
        print(f"registry robot: {exc}", file=sys.stderr)
        return 1
    except (RobotError, OSError) as exc:
        print(f"registry robot: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # LayerstoreError, MetadataUnavailable: one line, no traceback
        print(f"registry robot: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def run_user_secret(settings: Settings, args: argparse.Namespace) -> int:
    """``registry user secret …``; the exit status."""
    try:
        service = service_of(settings)
        if args.secret_command == "create":
            issued = service.create_user_secret(args.user, args.label)
            assert issued.user_secret is not None
            _print_issued(issued, args.json, f"registry: CLI secret "
                          f"{issued.user_secret.label!r} of user {args.user!r} (log in with it "
                          "as the password; revoke it with registry user secret revoke)")
        elif args.secret_command == "list":
            found = service.user_secrets(args.user)
            if args.json:
                print(json.dumps([s.to_json() for s in found], indent=2))
            for secret in found if not args.json else ():
                record = secret.to_json()
                print(f"{secret.user}\t{secret.label}\t{secret.id}\t{record['created_at']}")
        else:
            service.revoke_user_secret(args.user, args.label)
            print(f"registry: CLI secret {args.label!r} of user {args.user!r} revoked")
    except RobotNotFound as exc:
        print(f"registry user secret: {exc}", file=sys.stderr)
        return 1
    except (RobotError, OSError) as exc:
        print(f"registry user secret: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # LayerstoreError, MetadataUnavailable: one line, no traceback
        print(f"registry user secret: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


__all__ = ["add_robot_parser", "add_user_secret_parser", "run_robot",
           "run_user_secret", "service_of"]
