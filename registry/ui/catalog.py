"""What a viewer may see and do: projects, namespaces and repositories, read through the
project service and the metadata store, judged by the registry's access policy.

A *group* is what the projects page lists: a project of the project store (shown to its
members, to everyone when it is public, to system admins always: the project service's
``list_projects``), or a namespace, the first path segment of repositories outside any
project (``-`` stands for the repositories without a ``/``), shown when the viewer may
pull at least one of its repositories. An anonymous visitor never learns a private
project's name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from registry.auth.access import ANONYMOUS, AllowAll, can_see
from registry.auth.rules import ALL_ACTIONS, ANONYMOUS_PRINCIPAL, NO_ACTIONS, PULL, Principal
from registry.handlers.base import Services
from registry.projects.model import Project, project_of
from registry.projects.service import Actor, ProjectService
from registry.ui.session import Viewer, logins_of

TOP_LEVEL = "-"
_BATCH = 1000


@dataclass(frozen=True)
class Group:
    """A row of the projects page: a project (``project`` set) or a namespace; ``usage``
    in bytes against ``quota`` (``None``: no limit), ``repositories`` it holds."""

    name: str
    project: Project | None
    repositories: int
    usage: int | None
    quota: int | None = None

    @property
    def percent(self) -> int | None:
        """Usage against quota in whole percent (``None`` without a quota)."""
        if self.quota is None or self.usage is None:
            return None
        return min(100, round(100 * self.usage / self.quota)) if self.quota else 100


def actions(services: Services, who: Viewer | None, repository: str) -> frozenset[str]:
    """What ``who`` (``None``: anonymous) may do to ``repository`` under the registry's
    access policy (the rules, project roles and robot grants, as a token would carry)."""
    if isinstance(services.authorizer, AllowAll):
        return ALL_ACTIONS
    logins = logins_of(services)
    if logins is None:
        # An authorizer of the operator's own (``authorizer``): what its catalog shows
        # anonymous clients, read-only.
        return frozenset({PULL}) if can_see(services.authorizer, ANONYMOUS, repository) \
            else NO_ACTIONS
    return logins.policy.allowed(principal_of_viewer(who), "repository", repository)


def principal_of_viewer(who: Viewer | None) -> Principal:
    """The principal the access policy judges for ``who`` (``None``: anonymous)."""
    return who.principal if who is not None else ANONYMOUS_PRINCIPAL


def can_pull(services: Services, who: Viewer | None, repository: str) -> bool:
    """Whether ``who`` may see ``repository``."""
    return PULL in actions(services, who, repository)


def project_service(services: Services) -> ProjectService | None:
    """The project service over the registry's project store, or ``None`` without one."""
    if services.projects is None:
        return None
    return ProjectService(services.projects.store, usage=services.metadata,
                          roles=services.projects)


def actor_of(who: Viewer | None) -> Actor:
    """``who`` as the project service's actor (anonymous: no rights)."""
    if who is None:
        return Actor(ANONYMOUS_PRINCIPAL, admin=False)
    return who.actor()


def all_repositories(services: Services, after: str | None = None) -> Iterator[str]:
    """Every repository name after ``after``, in order, read in batches."""
    last = after
    while True:
        batch = services.metadata.repositories(last, _BATCH)
        yield from batch
        if len(batch) < _BATCH:
            return
        last = batch[-1]


def repositories_in(services: Services, group: str) -> Iterator[str]:
    """The repositories of ``group`` (a project or namespace; ``-``: top level), in order."""
    if group == TOP_LEVEL:
        yield from (r for r in all_repositories(services) if "/" not in r)
        return
    prefix = group + "/"
    for name in all_repositories(services, prefix):
        if not name.startswith(prefix):
            return
        yield name


def visible_projects(services: Services, who: Viewer | None) -> list[Project]:
    """The projects ``who`` may see (the project service's rule)."""
    service = project_service(services)
    if service is None:
        return []
    return service.list_projects(actor_of(who))


def project_names(services: Services) -> set[str]:
    """The names of every project (visible or not: to keep them out of the namespaces)."""
    if services.projects is None:
        return set()
    return set(services.projects.entries())


def groups(services: Services, who: Viewer | None) -> list[Group]:
    """The projects page's rows for ``who``: visible projects, then namespaces."""
    rows: list[Group] = []
    service = project_service(services)
    for project in visible_projects(services, who):
        usage = service.usage(project.name) if service is not None else None
        rows.append(Group(project.name, project, usage.repositories if usage else 0,
                          usage.bytes if usage else None, project.quota))
    taken = project_names(services)
    seen: dict[str, int] = {}
    for repository in all_repositories(services):
        space = project_of(repository) or TOP_LEVEL
        if space in taken or not can_pull(services, who, repository):
            continue
        seen[space] = seen.get(space, 0) + 1
    for space, count in sorted(seen.items()):
        rows.append(Group(space, None, count, _namespace_bytes(services, space)))
    return rows


def find_group(services: Services, who: Viewer | None, name: str) -> Group | None:
    """The group ``name`` if ``who`` may see it (a private project is not found)."""
    if name in project_names(services):
        service = project_service(services)
        for project in visible_projects(services, who):
            if project.name == name:
                usage = service.usage(name) if service is not None else None
                return Group(name, project, usage.repositories if usage else 0,
                             usage.bytes if usage else None, project.quota)
        return None
    count = sum(1 for r in repositories_in(services, name) if can_pull(services, who, r))
    if not count:
        return None
    return Group(name, None, count, _namespace_bytes(services, name))


def _namespace_bytes(services: Services, space: str) -> int | None:
    return services.metadata.namespace_usage(space)[1] if space != TOP_LEVEL else None
