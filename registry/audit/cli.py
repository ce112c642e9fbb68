"""``registry audit`` (list the audit log) and ``registry webhook add|list|remove|
deliveries`` (a project's webhooks and their delivery log): the parsers and what they run.
Both call the services of :mod:`registry.audit` and :mod:`registry.webhooks.service`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from layerstore.errors import LayerstoreError
from registry import audit
from registry.audit.events import (
    AuditError,
    AuditQuery,
    iso,
    parse_since,
)
from registry.config import Settings
from registry.webhooks.model import WebhookError
from registry.webhooks.projects import project_check
from registry.webhooks.service import DEFAULT_EVENTS, WebhookService, delivery_doc, hook_doc
from registry.webhooks.store import open_webhook_store

__all__ = ["COMMANDS", "add_parsers", "run"]

COMMANDS = ("audit", "webhook")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``audit`` and ``webhook`` to the ``registry`` command's subcommands."""
    show = sub.add_parser("audit", help="list the audit log (newest first)")
    common(show)
    show.add_argument("--project", help="only events of this project")
    show.add_argument("--user", help="only events of this user ('' for anonymous)")
    show.add_argument("--since", help="only events since an ISO date/time (2026-01-31, "
                      "2026-01-31T12:00:00Z) or a duration back from now (30m, 1h, 7d)")
    show.add_argument("--limit", type=_positive, default=100,
                      help="at most this many events (default 100)")
    show.add_argument("--json", action="store_true", help="one JSON array")
    hook = sub.add_parser("webhook", help="manage a project's webhooks")
    hook_sub = hook.add_subparsers(dest="webhook_command", required=True)
    add = hook_sub.add_parser("add", help="send a project's events to a URL")
    common(add)
    add.add_argument("project", metavar="PROJECT")
    add.add_argument("--url", required=True, help="where to POST the events (http/https)")
    add.add_argument("--events", default=DEFAULT_EVENTS,
                     help=f"comma-separated events (default {DEFAULT_EVENTS})")
    add.add_argument("--secret-stdin", action="store_true",
                     help="read the signing secret from the first line of standard input")
    add.add_argument("--name", help="the webhook's name (default: from the URL's host)")
    listing = hook_sub.add_parser("list", help="list a project's webhooks")
    common(listing)
    listing.add_argument("project", metavar="PROJECT")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    remove = hook_sub.add_parser("remove", help="remove a webhook and its deliveries")
    common(remove)
    remove.add_argument("project", metavar="PROJECT")
    remove.add_argument("name", metavar="NAME")
    log = hook_sub.add_parser("deliveries", help="the delivery log of a project's webhooks")
    common(log)
    log.add_argument("project", metavar="PROJECT")
    log.add_argument("--name", help="only this webhook's deliveries")
    log.add_argument("--limit", type=_positive, default=50,
                     help="at most this many deliveries (default 50)")
    log.add_argument("--json", action="store_true", help="one JSON array")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run ``registry audit`` or ``registry webhook …``; the exit status."""
    where = f"registry {args.command}"
    try:
        if args.command == "audit":
            return _audit(settings, args)
        return _webhook(settings, args)
    except (AuditError, WebhookError) as exc:
        print(f"{where}: {exc}", file=sys.stderr)
        return 2
    except (LayerstoreError, OSError) as exc:
        print(f"{where}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if type(exc).__module__.startswith("psycopg"):
            print(f"{where}: the metadata database: {exc}".splitlines()[0], file=sys.stderr)
            return 1
        raise


def _audit(settings: Settings, args: argparse.Namespace) -> int:
    since = parse_since(args.since) if args.since is not None else None
    events = audit.query(settings, AuditQuery(args.project, args.user, since, args.limit))
    if args.json:
        print(json.dumps([e.as_dict() for e in events], indent=2))
        return 0
    for event in events:
        what = event.repository + (f":{event.reference}" if event.reference and not
                                   event.reference.startswith("sha") else
                                   (f"@{event.reference}" if event.reference else ""))
        print("\t".join([iso(event.at), event.action, event.subject or "(anonymous)",
                         event.address, what or event.project or "-", event.detail or "-"]))
    return 0


def _read_secret() -> str:
    secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        raise WebhookError("--secret-stdin: the secret on standard input is empty")
    return secret


def _webhook(settings: Settings, args: argparse.Namespace) -> int:
    secret = _read_secret() if getattr(args, "secret_stdin", False) else ""
    store = open_webhook_store(settings)
    try:
        return _webhook_command(WebhookService(store, settings, project_check(settings)), args,
                                secret)
    finally:
        store.close()


def _webhook_command(service: WebhookService, args: argparse.Namespace, secret: str) -> int:
    command, project = args.webhook_command, args.project
    if command == "add":
        hook = service.add(project, args.url, events=args.events, secret=secret,
                           name=args.name)
        print(f"registry: webhook {hook.name!r} of project {project!r} sends "
              f"{', '.join(hook.events)} to {hook.url}"
              f"{' signed' if hook.secret else ' unsigned'}")
    elif command == "remove":
        service.remove(project, args.name)
        print(f"registry: webhook {args.name!r} of project {project!r} removed")
    elif command == "list":
        hooks = service.webhooks(project)
        if args.json:
            print(json.dumps([hook_doc(h) for h in hooks], indent=2))
        for hook in [] if args.json else hooks:
            print("\t".join([hook.name, hook.url, ",".join(hook.events),
                             "signed" if hook.secret else "unsigned"]))
    else:
        docs = [delivery_doc(name, d)
                for name, d in service.deliveries(project, args.name, args.limit)]
        if args.json:
            print(json.dumps(docs, indent=2))
        for doc in [] if args.json else docs:
            print("\t".join(str(doc[k]) if doc[k] is not None else "-" for k in (
                "id", "webhook", "event", "state", "attempts", "response_code", "updated",
                "last_error")))
    return 0
