"""``registry replicate add|list|run|status|history|remove``: replication rules and their
runs, on the registry's root (or its PostgreSQL database with ``metadata_url``).

    registry replicate add mirror-out --to https://far.example --repos 'team/**' --on-push
    registry replicate add nightly --from https://hub.example --tags 'v*' --every 1d
    registry replicate run mirror-out --dry-run
    registry replicate status mirror-out
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from layerstore.errors import LayerstoreError
from registry.audit.events import iso
from registry.client.errors import ClientError
from registry.config import Settings
from registry.replication import events
from registry.replication.model import (
    MANUAL,
    ON_PUSH,
    PULL,
    PUSH,
    SCHEDULE,
    ReplicationError,
    Rule,
    Run,
    check_name,
    check_url,
    format_duration,
    parse_duration,
)
from registry.replication.patterns import compile_pattern
from registry.replication.runner import run_rule
from registry.replication.store import ReplicationStore, open_replication_store

__all__ = ["add_parser", "rule_dict", "run", "run_dict"]


def add_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``replicate`` and its subcommands to the ``registry`` parser."""
    top = sub.add_parser("replicate", help="copy images to or from other registries")
    rsub = top.add_subparsers(dest="replicate_command", required=True)
    add = rsub.add_parser("add", help="add a replication rule")
    common(add)
    add.add_argument("name", metavar="NAME")
    where = add.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", metavar="URL", help="push to this registry")
    where.add_argument("--from", dest="source", metavar="URL",
                       help="pull from this registry")
    add.add_argument("--repos", default="**", metavar="PATTERN",
                     help="repositories to copy ('**' all, 'team/*', '{a,b}/**')")
    add.add_argument("--tags", default="**", metavar="PATTERN",
                     help="tags to copy ('v*', '{latest,stable}', …; default all)")
    when = add.add_mutually_exclusive_group()
    when.add_argument("--on-push", action="store_true",
                      help="run after each push to a matching repository (--to rules)")
    when.add_argument("--every", metavar="DURATION", help="run every 30m, 1h, 1d …")
    add.add_argument("--deletes", action="store_true",
                     help="delete from the destination the selected tags the source no "
                     "longer has")
    add.add_argument("--local-url", metavar="URL",
                     help="how to reach this registry (default: http(s)://addr)")
    listing = rsub.add_parser("list", help="list the rules")
    common(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")
    go = rsub.add_parser("run", help="run a rule now")
    common(go)
    go.add_argument("name", metavar="NAME")
    go.add_argument("--dry-run", action="store_true",
                    help="print what would be copied and deleted; change nothing")
    go.add_argument("--json", action="store_true", help="print JSON")
    status = rsub.add_parser("status", help="a rule and its last run")
    common(status)
    status.add_argument("name", metavar="NAME")
    status.add_argument("--json", action="store_true", help="print JSON")
    history = rsub.add_parser("history", help="the runs of a rule, newest first")
    common(history)
    history.add_argument("name", metavar="NAME")
    history.add_argument("--limit", type=int, default=20, help="at most this many runs")
    history.add_argument("--json", action="store_true", help="print JSON")
    remove = rsub.add_parser("remove", help="remove a rule and its history")
    common(remove)
    remove.add_argument("name", metavar="NAME")


def rule_dict(rule: Rule) -> dict[str, Any]:
    """A rule as ``--json`` shows it."""
    return {"name": rule.name, "direction": rule.direction, "url": rule.url,
            "repos": rule.repos, "tags": rule.tags, "trigger": rule.trigger,
            "every": format_duration(rule.interval) if rule.interval else None,
            "deletes": rule.deletes, "local_url": rule.local_url or None,
            "created": iso(rule.created_at)}


def run_dict(run: Run) -> dict[str, Any]:
    """A run as ``--json`` shows it."""
    return {"id": run.id, "rule": run.rule, "trigger": run.trigger, "state": run.state,
            "started": iso(run.started_at),
            "finished": iso(run.finished_at) if run.finished_at else None,
            "manifests": run.manifests, "blobs": run.blobs, "skipped": run.skipped,
            "mounted": run.mounted, "bytes": run.bytes, "deleted": run.deleted,
            "error": run.error, "resumed": run.resumed or None}


def build_rule(args: argparse.Namespace, now: float) -> Rule:
    """The rule ``replicate add`` describes; ReplicationError naming the bad flag."""
    name = check_name(args.name)
    direction, flag, url = (PUSH, "--to", args.to) if args.to else (PULL, "--from",
                                                                      args.source)
    url = check_url(url, flag)
    compile_pattern(args.repos, "--repos")
    compile_pattern(args.tags, "--tags")
    trigger, interval = MANUAL, 0
    if args.on_push:
        if direction != PUSH:
            raise ReplicationError("--on-push: only a --to rule runs on pushes (this "
                                   "registry sees only its own pushes); use --every with "
                                   "--from")
        trigger = ON_PUSH
    elif args.every:
        trigger, interval = SCHEDULE, parse_duration(args.every)
    local = check_url(args.local_url, "--local-url") if args.local_url else ""
    return Rule(name, direction, url, args.repos, args.tags, trigger, interval,
                args.deletes, local, now, now + interval if interval else 0.0)


def _summary(run: Run) -> str:
    text = (f"run {run.id} {run.state}: {run.manifests} manifests, {run.blobs} blobs "
            f"({run.bytes} bytes) copied, {run.skipped} skipped (already there), "
            f"{run.mounted} mounted, {run.deleted} deleted")
    if run.resumed:
        text += f"; took over interrupted run {run.resumed}"
    return text + (f"; error: {run.error}" if run.error else "")


def _rule(store: ReplicationStore, name: str) -> Rule:
    rule = store.get(check_name(name))
    if rule is None:
        raise ReplicationError(f"NAME {name!r}: no such replication rule (registry "
                               "replicate list shows them)")
    return rule


def _print(doc: Any) -> None:
    print(json.dumps(doc, indent=2))


def _execute(settings: Settings, args: argparse.Namespace, store: ReplicationStore) -> int:
    command = args.replicate_command
    if command == "add":
        rule = build_rule(args, time.time())
        store.add(rule)
        events.rule_added(settings, rule)
        print(f"registry: replication rule {rule.name!r} added ({rule.direction} "
              f"{rule.url}, repos {rule.repos}, tags {rule.tags}, "
              f"{rule.describe_trigger()})")
        return 0
    if command == "list":
        rules = store.rules()
        if args.json:
            _print([rule_dict(r) for r in rules])
            return 0
        for r in rules:
            print(f"{r.name}\t{r.direction}\t{r.url}\t{r.repos}\t{r.tags}\t"
                  f"{r.describe_trigger()}{chr(9) + 'deletes' if r.deletes else ''}")
        return 0
    if command == "remove":
        if not store.remove(check_name(args.name)):
            raise ReplicationError(f"NAME {args.name!r}: no such replication rule")
        events.rule_removed(settings, args.name)
        print(f"registry: replication rule {args.name!r} removed")
        return 0
    rule = _rule(store, args.name)
    if command == "run":
        done, plan = run_rule(rule, settings, store, trigger=MANUAL, dry_run=args.dry_run)
        if plan is not None:
            if args.json:
                _print({"copy": [{"repository": r, "tag": t, "digest": d}
                                 for r, t, d in plan.copy],
                        "delete": [{"repository": r, "tag": t} for r, t in plan.delete]})
                return 0
            for repository, tag, digest in plan.copy:
                print(f"would copy {repository}:{tag} ({digest})")
            for repository, tag in plan.delete:
                print(f"would delete {repository}:{tag}")
            print(f"dry run: {len(plan.copy)} to copy, {len(plan.delete)} to delete")
            return 0
        if args.json:
            _print(run_dict(done))
        elif not done.error:
            print(f"registry: {rule.name}: {_summary(done)}")
        if done.error:
            print(f"registry replicate: {rule.name}: run {done.id} failed: {done.error}",
                  file=sys.stderr)
            return 1
        return 0
    runs = store.runs(rule.name, 1 if command == "status" else max(args.limit, 1))
    if command == "status":
        if args.json:
            _print({**rule_dict(rule), "last_run": run_dict(runs[0]) if runs else None})
            return 0
        print(f"{rule.name}: {rule.direction} {rule.url}, repos {rule.repos}, tags "
              f"{rule.tags}, {rule.describe_trigger()}"
              f"{', deletes' if rule.deletes else ''}")
        print(f"last: {_summary(runs[0])}" if runs else "last: never run")
        return 0
    if args.json:
        _print([run_dict(r) for r in runs])
        return 0
    for past in runs:
        print(f"{iso(past.started_at)}\t{past.trigger}\t{_summary(past)}")
    return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run a ``registry replicate`` subcommand; the exit status."""
    try:
        store = open_replication_store(settings)
    except (LayerstoreError, OSError) as exc:
        print(f"registry replicate: {exc}", file=sys.stderr)
        return 1
    try:
        return _execute(settings, args, store)
    except (ReplicationError, ClientError) as exc:
        print(f"registry replicate: {exc}", file=sys.stderr)
        return 2
    except (LayerstoreError, OSError) as exc:
        print(f"registry replicate: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
