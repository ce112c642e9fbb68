"""``registry immutable add|list|remove`` and ``registry retention add|list|remove|run``:
the command-line face of :class:`~registry.tagpolicy.service.TagPolicyService`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from layerstore.errors import LayerstoreError
from registry.config import Settings
from registry.metadata.store import MetadataStore
from registry.tagpolicy.errors import TagPolicyError
from registry.tagpolicy.retention import RetentionPlan, RetentionResult
from registry.tagpolicy.rules import ArgumentNames
from registry.tagpolicy.service import TagPolicyService

COMMANDS = ("immutable", "retention")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the ``immutable`` and ``retention`` commands to the ``registry`` parser."""
    imm = sub.add_parser("immutable", help="immutable tags of projects")
    imm_sub = imm.add_subparsers(dest="immutable_command", required=True)
    add = imm_sub.add_parser("add", help="make the matching tags of a project immutable")
    common(add)
    add.add_argument("project", metavar="PROJECT")
    add.add_argument("--repos", default="**", metavar="PATTERN",
                     help="repositories of the project (path after the project; default **)")
    add.add_argument("--tags", required=True, metavar="PATTERN",
                     help="the tags made immutable (e.g. 'v*', '{latest,stable}')")
    add.add_argument("--json", action="store_true", help="print the rule as JSON")
    _list_and_remove(imm_sub, common, "immutability")

    ret = sub.add_parser("retention", help="retention rules of projects and retention runs")
    ret_sub = ret.add_subparsers(dest="retention_command", required=True)
    add = ret_sub.add_parser("add", help="add a rule saying which tagged manifests to keep")
    common(add)
    add.add_argument("project", metavar="PROJECT")
    add.add_argument("--repos", default="**", metavar="PATTERN",
                     help="repositories of the project (path after the project; default **)")
    add.add_argument("--tags", default=None, metavar="PATTERN",
                     help="only manifests with a tag matching this count (default **)")
    keep = add.add_mutually_exclusive_group(required=True)
    keep.add_argument("--keep-latest", metavar="N", help="keep the N most recently pushed")
    keep.add_argument("--keep-days", metavar="D", help="keep those pushed within D days")
    keep.add_argument("--keep-tags", metavar="PATTERN",
                      help="keep every manifest with a tag matching PATTERN")
    add.add_argument("--json", action="store_true", help="print the rule as JSON")
    _list_and_remove(ret_sub, common, "retention")
    run = ret_sub.add_parser("run", help="remove the manifests no retention rule keeps")
    common(run)
    run.add_argument("--project", metavar="P", help="only this project")
    run.add_argument("--dry-run", action="store_true",
                     help="list exactly what a run would remove; change nothing")


def _list_and_remove(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                     common: Callable[[argparse.ArgumentParser], None], what: str) -> None:
    listing = sub.add_parser("list", help=f"list the {what} rules")
    common(listing)
    listing.add_argument("project", metavar="PROJECT", nargs="?",
                         help="only this project's rules")
    listing.add_argument("--json", action="store_true", help="print JSON")
    remove = sub.add_parser("remove", help=f"remove an {what} rule by its id")
    common(remove)
    remove.add_argument("project", metavar="PROJECT")
    remove.add_argument("rule", metavar="RULE", help="the rule id (from list)")


def _open(settings: Settings, args: argparse.Namespace
          ) -> tuple[TagPolicyService, MetadataStore | None]:
    """The service, and the metadata store where a command needs it (a retention run;
    with PostgreSQL always: the rules live in its database)."""
    from registry.metadata.backends import open_metadata
    from registry.projects.backends import open_project_store
    from registry.tagpolicy.service import open_tag_policy, projects_of

    running = args.command == "retention" and args.retention_command == "run"
    meta = open_metadata(settings, migrate=True) if running or settings.metadata_url else None
    projects = projects_of(open_project_store(settings, migrate=True))
    return open_tag_policy(settings, meta, projects), meta


def main(settings: Settings, args: argparse.Namespace) -> int:
    """Run an ``immutable`` or ``retention`` command; the exit status (2: bad input)."""
    prog = f"registry {args.command}"
    try:
        policy, meta = _open(settings, args)
    except LayerstoreError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    try:
        if args.command == "immutable":
            return _immutable(policy, args)
        return _retention(policy, meta, args)
    except TagPolicyError as exc:
        print(f"{prog} {_verb(args)}: {exc}", file=sys.stderr)
        return 2
    except LayerstoreError as exc:
        print(f"{prog} {_verb(args)}: {exc}", file=sys.stderr)
        return 1
    finally:
        policy.close()
        if meta is not None:
            meta.close()


def _verb(args: argparse.Namespace) -> str:
    return str(getattr(args, f"{args.command}_command"))


def _immutable(policy: TagPolicyService, args: argparse.Namespace) -> int:
    verb = args.immutable_command
    if verb == "add":
        rule = policy.add_immutable(args.project, args.repos, args.tags)
        print(json.dumps(rule.to_json()) if args.json
              else f"registry: added {rule.describe()}")
    elif verb == "list":
        rules = policy.immutable_rules(args.project)
        if args.json:
            print(json.dumps([rule.to_json() for rule in rules], indent=2))
        for rule in [] if args.json else rules:
            print(f"{rule.id}\t{rule.project}\trepos={rule.repositories}\ttags={rule.tags}")
    else:
        policy.remove_immutable(args.project, args.rule)
        print(f"registry: removed immutability rule {args.rule} of project {args.project!r}")
    return 0


def _retention(policy: TagPolicyService, meta: MetadataStore | None,
               args: argparse.Namespace) -> int:
    verb = args.retention_command
    if verb == "add":
        if args.keep_tags is not None:
            if args.tags is not None:
                raise TagPolicyError("--tags: not with --keep-tags (which is the tag pattern)")
            rule = policy.add_retention(args.project, "always", None, args.repos,
                                        args.keep_tags, ArgumentNames(tags="--keep-tags"))
        else:
            kind, count = (("latest", args.keep_latest) if args.keep_latest is not None
                           else ("days", args.keep_days))
            rule = policy.add_retention(args.project, kind, count, args.repos,
                                        args.tags or "**")
        print(json.dumps(rule.to_json()) if args.json
              else f"registry: added {rule.describe()}")
    elif verb == "list":
        rules = policy.retention_rules(args.project)
        if args.json:
            print(json.dumps([rule.to_json() for rule in rules], indent=2))
        for rule in [] if args.json else rules:
            keep = rule.kind if rule.count is None else f"{rule.kind}={rule.count}"
            print(f"{rule.id}\t{rule.project}\trepos={rule.repositories}\ttags={rule.tags}\t"
                  f"keep={keep}")
    elif verb == "remove":
        policy.remove_retention(args.project, args.rule)
        print(f"registry: removed retention rule {args.rule} of project {args.project!r}")
    else:
        assert meta is not None
        planned = policy.plan_retention(meta, args.project)
        result = None if args.dry_run else policy.run_retention(meta, planned)
        for line in report_lines(planned, result):
            print(line)
    return 0


def report_lines(planned: RetentionPlan, result: RetentionResult | None) -> list[str]:
    """What a retention run prints: one line per manifest (``would remove``/``removed``/
    ``skipped``) and a summary line starting ``retention:``."""
    if result is None:
        lines = [f"would remove {r.line()}" for r in planned.removals]
        verb, count = "would remove", len(planned.removals)
    else:
        lines = [f"removed {r.line()}" for r in result.removed]
        lines += [f"skipped {r.line()}\t(changed since it was planned)" for r in result.skipped]
        verb, count = "removed", len(result.removed)
    lines.append(f"retention: {verb} {count} manifests in {planned.repositories} "
                 f"repositories with rules; kept {planned.kept} tagged manifests"
                 + ("; run 'registry gc' to free their blobs" if result is not None and count
                    else ""))
    return lines
