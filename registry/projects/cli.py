"""``registry project …``: create, list, show, update and delete projects, and manage their
members, on the registry's root (or its PostgreSQL database with ``metadata_url``). The
command acts as the registry's operator (:data:`~registry.projects.service.OPERATOR`); it
calls the same :class:`~registry.projects.service.ProjectService` as the management API,
which records each change in the audit log (as the operating-system user at ``local``).

Changes reach a running server within a second."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from registry.config import Settings
from registry.projects.model import (
    ROLES,
    ProjectError,
    ProjectInvalid,
    format_size,
    parse_size,
)
from registry.projects.service import (
    ProjectService,
    ProjectView,
    project_dict,
    view_dict,
)
from registry.proxy.projects import add_proxy_flags, attach_proxy, proxy_of_args, show_proxy


def add_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``project`` and its subcommands to the ``registry`` parser."""
    project = sub.add_parser("project", help="manage projects (repository namespaces with "
                             "members, roles and quotas)")
    psub = project.add_subparsers(dest="project_command", required=True)
    create = psub.add_parser("create", help="create a project")
    common(create)
    create.add_argument("name", help="the project: the first segment of its repositories")
    create.add_argument("--public", action="store_true",
                        help="anyone, anonymous clients too, may pull its repositories")
    create.add_argument("--quota", metavar="SIZE",
                        help="storage quota, e.g. 10GiB, 500MB, 2G (default: none)")
    add_proxy_flags(create)
    listing = psub.add_parser("list", help="list the projects")
    common(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = psub.add_parser("show", help="print a project, its members and its usage")
    common(show)
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="print JSON")
    update = psub.add_parser("update", help="change a project's visibility or quota")
    common(update)
    update.add_argument("name")
    visibility = update.add_mutually_exclusive_group()
    visibility.add_argument("--public", dest="public", action="store_const", const=True,
                            default=None, help="make it public")
    visibility.add_argument("--private", dest="public", action="store_const", const=False,
                            help="make it private")
    update.add_argument("--quota", metavar="SIZE", help="new quota (none: no limit)")
    delete = psub.add_parser("delete", help="delete a project without repositories")
    common(delete)
    delete.add_argument("name")
    member = psub.add_parser("member", help="manage a project's members")
    msub = member.add_subparsers(dest="member_command", required=True)
    add = msub.add_parser("add", help="give a user or @group a role in a project")
    common(add)
    add.add_argument("project")
    add.add_argument("member", help="a user name, or @group")
    add.add_argument("--role", required=True, help=f"one of {', '.join(ROLES)}")
    mlist = msub.add_parser("list", help="list a project's members")
    common(mlist)
    mlist.add_argument("project")
    remove = msub.add_parser("remove", help="take a member's role away")
    common(remove)
    remove.add_argument("project")
    remove.add_argument("member")


def _open(settings: Settings, *, usage: bool) -> ProjectService:
    from registry.audit import change_recorder
    from registry.auth.shared_state import open_user_store
    from registry.projects.backends import open_project_store

    metadata = None
    if usage:
        from registry.metadata.backends import open_metadata

        metadata = open_metadata(settings, migrate=True)
    return ProjectService(open_project_store(settings, migrate=True), metadata,
                          users=open_user_store(settings), record=change_recorder(settings))


def _show(view: ProjectView) -> list[str]:
    p = view.project
    lines = [f"project {p.name}", f"  visibility: {'public' if p.public else 'private'}"]
    usage = view.usage
    if usage is not None:
        share = ""
        if p.quota:
            share = f" ({100 * usage.bytes / p.quota:.1f}% of the quota)"
        lines.append(f"  quota: {format_size(p.quota)}")
        lines.append(f"  usage: {format_size(usage.bytes)} ({usage.bytes} bytes) in "
                     f"{usage.repositories} repositor"
                     f"{'y' if usage.repositories == 1 else 'ies'}{share}")
    lines.append("  members:" if view.members else "  members: none")
    lines += [f"    {m.name}\t{m.role}" for m in view.members]
    return lines


def _run(service: ProjectService, args: argparse.Namespace) -> None:
    command = args.project_command
    if command == "create":
        project = service.create(args.name, public=args.public,
                                 quota=parse_size(args.quota))
        print(f"registry: project {project.name!r} created "
              f"({'public' if project.public else 'private'}, quota "
              f"{format_size(project.quota)})")
    elif command == "list":
        projects = service.list_projects()
        if args.json:
            print(json.dumps([project_dict(p) for p in projects], indent=2))
        for p in [] if args.json else projects:
            print(f"{p.name}\t{'public' if p.public else 'private'}\t{format_size(p.quota)}")
    elif command == "show":
        view = service.show(args.name)
        print(json.dumps(view_dict(view), indent=2) if args.json else "\n".join(_show(view)))
    elif command == "update":
        changes: dict[str, Any] = {}
        if args.public is not None:
            changes["public"] = args.public
        if args.quota is not None:
            changes["quota"] = parse_size(args.quota)
        if not changes:
            raise ProjectInvalid("project update: give --public, --private or --quota")
        project = service.update(args.name, **changes)
        print(f"registry: project {project.name!r} is "
              f"{'public' if project.public else 'private'}, quota "
              f"{format_size(project.quota)}")
    elif command == "delete":
        service.delete(args.name)
        print(f"registry: project {args.name!r} deleted")
    elif args.member_command == "add":
        member, added = service.add_member(args.project, args.member, args.role)
        print(f"registry: {member.name} {'added to' if added else 'now'} "
              f"{'' if added else 'has role ' + member.role + ' in '}project "
              f"{member.project}{' as ' + member.role if added else ''}")
    elif args.member_command == "list":
        for m in service.members(args.project):
            print(f"{m.name}\t{m.role}")
    else:
        member = service.remove_member(args.project, args.member)
        print(f"registry: {member.name} removed from project {member.project}")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run one ``registry project`` command; the exit status."""
    from layerstore.errors import LayerstoreError

    usage = args.project_command in ("show", "delete")
    try:
        service = _open(settings, usage=usage)
    except LayerstoreError as exc:
        print(f"registry project: {exc}", file=sys.stderr)
        return 1
    try:
        proxy = proxy_of_args(args) if args.project_command == "create" else None
        _run(service, args)
        if proxy is not None:
            attach_proxy(settings, service.get(args.name), proxy)
        if args.project_command == "show" and not args.json:
            show_proxy(settings, service.get(args.name))
    except ProjectInvalid as exc:
        print(f"registry project: {exc}", file=sys.stderr)
        return 2
    except (ProjectError, LayerstoreError, OSError) as exc:
        print(f"registry project: {exc}", file=sys.stderr)
        return 1
    finally:
        service.store.close()
        if service.usage_source is not None:
            close = getattr(service.usage_source, "close", None)
            if close is not None:
                close()
    return 0
