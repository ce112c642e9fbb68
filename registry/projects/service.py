"""The project service: the one implementation of project operations, called by the
``registry project`` commands and by the management API.

Every operation takes an :class:`Actor`: who asks. The command line acts as
:data:`OPERATOR` (whoever can write the registry's root or database is its operator and may
do everything); the API passes the authenticated caller, and the service checks its
permission (Harbor's rules):

* system admins (the config's ``admins``) may do everything;
* creating a project and setting a quota needs a system admin;
* a project admin may change the project's visibility, manage its members and delete it;
* any member may read the project, its members and its usage; anyone may read a public
  project's record; ``list_projects`` shows a caller the public projects and those it belongs to.

Failures are :class:`~registry.projects.model.ProjectError` with a one-line message naming
the argument; a refused operation changes nothing.

Each change (``project.create``, ``project.update``, ``project.delete``, ``member.add``,
``member.remove``) is logged in the audit log through the service's
:class:`~registry.audit.changes.ChangeRecorder`, if it was given one, as done by the actor
(the operator: the operating-system user at address ``local``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from registry.audit.changes import ActorAddress, ChangeRecorder, change_event
from registry.auth.rules import Principal
from registry.auth.users import UserStore
from registry.projects.model import (
    ADMIN,
    GUEST,
    ROLE_RANK,
    Member,
    Project,
    ProjectDenied,
    ProjectInvalid,
    ProjectNotEmpty,
    ProjectNotFound,
    Usage,
    check_member_name,
    check_project_name,
    check_role,
)
from registry.projects.policy import ProjectRoles, build_entries
from registry.projects.quota import UsageSource
from registry.projects.store import ProjectStore


@dataclass(frozen=True)
class Actor:
    """Who asks for a project operation: ``principal`` ``None`` is the operator; ``address``
    is where an API caller's request came from (for the audit log)."""

    principal: Principal | None = None
    admin: bool = True
    address: str = ""

    @property
    def name(self) -> str:
        """The actor's name for messages."""
        if self.principal is None:
            return "the operator"
        return self.principal.subject or "anonymous"

    @property
    def audited(self) -> ActorAddress:
        """Who the audit log names: (subject, address), or ``None`` for the operator."""
        if self.principal is None:
            return None
        return self.principal.subject or "", self.address or "unknown"


OPERATOR = Actor()


@dataclass(frozen=True)
class ProjectView:
    """A project as ``show`` presents it: its record, members, usage and the asker's role."""

    project: Project
    members: tuple[Member, ...] = ()
    usage: Usage | None = None
    role: str | None = None
    repositories: tuple[str, ...] = field(default=())


def project_dict(project: Project) -> dict[str, Any]:
    """A project as JSON."""
    return {"name": project.name, "public": project.public, "quota": project.quota,
            "created_at": project.created_at}


def view_dict(view: ProjectView) -> dict[str, Any]:
    """A project with its members and usage as JSON."""
    out = project_dict(view.project)
    out["members"] = [member_dict(m) for m in view.members]
    if view.usage is not None:
        out["usage"] = {"bytes": view.usage.bytes, "repositories": view.usage.repositories}
    return out


def member_dict(member: Member) -> dict[str, Any]:
    """A member as JSON."""
    return {"project": member.project, "name": member.name, "role": member.role}


_UNSET = object()


class ProjectService:
    """Project operations over a :class:`ProjectStore` (module docstring)."""

    def __init__(self, store: ProjectStore, usage: UsageSource | None = None,
                 users: UserStore | None = None, roles: ProjectRoles | None = None,
                 record: ChangeRecorder | None = None) -> None:
        """Keep projects in ``store``; ``usage`` tells what their repositories hold,
        ``users`` vets new members, ``roles`` is the cache to clear on a change, ``record``
        logs the changes in the audit log."""
        self.store = store
        self.usage_source = usage
        self.users = users
        self.roles = roles or ProjectRoles(store)
        self.record = record

    # --- permissions -----------------------------------------------------------------

    def role_of(self, actor: Actor, project: str) -> str | None:
        """The role of ``actor`` in ``project`` (``admin`` for system admins)."""
        if actor.admin:
            return ADMIN
        assert actor.principal is not None
        members = self.store.members(project)
        entry = build_entries([Project(project)], members)[project]
        return entry.role(actor.principal)

    def require(self, actor: Actor, project: str, minimum: str, doing: str) -> Project:
        """The project, if ``actor`` holds at least role ``minimum`` in it; ProjectDenied
        (or ProjectNotFound) otherwise."""
        found = self.get(project)
        if actor.admin:
            return found
        role = self.role_of(actor, project)
        if role is None or ROLE_RANK[role] < ROLE_RANK[minimum]:
            have = f"role {role}" if role else "no role"
            raise ProjectDenied(f"{actor.name} may not {doing} project {project}: it needs "
                                f"role {minimum} or higher and has {have}")
        return found

    def _system_admin(self, actor: Actor, doing: str) -> None:
        if not actor.admin:
            raise ProjectDenied(f"{actor.name} may not {doing}: only system admins (the "
                                "config's admins) may")

    def _changed(self, action: str, actor: Actor, project: str, detail: str) -> None:
        self.roles.invalidate()
        if self.record is not None:
            self.record([change_event(action, actor.audited, project=project,
                                      detail=detail)])

    # --- projects --------------------------------------------------------------------

    def get(self, name: str) -> Project:
        """The project named ``name``; ProjectNotFound naming it otherwise."""
        found = self.store.get(check_project_name(name))
        if found is None:
            raise ProjectNotFound(f"project {name!r} does not exist")
        return found

    def list_projects(self, actor: Actor = OPERATOR) -> list[Project]:
        """The projects ``actor`` may see, by name."""
        projects = self.store.projects()
        if actor.admin:
            return projects
        assert actor.principal is not None
        entries = build_entries(projects, self.store.members())
        return [p for p in projects
                if p.public or entries[p.name].role(actor.principal) is not None]

    def show(self, name: str, actor: Actor = OPERATOR) -> ProjectView:
        """A project with its members and usage (members: for its members only)."""
        project = self.get(name)
        role = self.role_of(actor, name)
        if role is None and not project.public:
            raise ProjectDenied(f"{actor.name} may not read project {name}: it is private "
                                "and the caller is no member")
        members = tuple(self.store.members(name)) if role is not None else ()
        return ProjectView(project, members, self.usage(name), role)

    def usage(self, name: str) -> Usage:
        """What the project's repositories hold now (zero without a metadata store)."""
        if self.usage_source is None:
            return Usage(0, 0)
        repositories, size = self.usage_source.namespace_usage(name)
        return Usage(repositories, size)

    def create(self, name: str, *, public: bool = False, quota: int | None = None,
               actor: Actor = OPERATOR) -> Project:
        """Add a project; a caller of the API becomes its admin. ProjectExists if the name
        is taken."""
        check_project_name(name)
        self._system_admin(actor, f"create project {name}")
        if quota is not None and quota < 0:
            raise ProjectInvalid(f"--quota {quota} is negative")
        project = Project(name, public, quota)
        self.store.create(project)
        detail = _settings_detail(project)
        if actor.principal is not None and actor.principal.subject is not None:
            self.store.set_member(Member(name, actor.principal.subject, ADMIN))
            detail += f" admin={actor.principal.subject}"
        self._changed("project.create", actor, name, detail)
        return self.get(name)

    def update(self, name: str, *, public: bool | None = None,
               quota: int | object | None = _UNSET, actor: Actor = OPERATOR) -> Project:
        """Change a project's visibility (project admin) or quota (system admin; ``None``
        removes the limit)."""
        project = self.require(actor, name, ADMIN, "change")
        if quota is not _UNSET:
            self._system_admin(actor, f"set the quota of project {name}")
        new = Project(project.name,
                      project.public if public is None else public,
                      project.quota if quota is _UNSET else quota,  # type: ignore[arg-type]
                      project.created_at)
        self.store.update(new)
        self._changed("project.update", actor, name, _update_detail(project, new))
        return new

    def delete(self, name: str, actor: Actor = OPERATOR) -> Project:
        """Remove an empty project and its members (project admin). A project whose
        repositories still hold anything is refused, as Harbor does: delete them first."""
        project = self.require(actor, name, ADMIN, "delete")
        held = self.usage(name)
        if held.repositories:
            raise ProjectNotEmpty(
                f"project {name!r} still has {held.repositories} "
                f"repositor{'y' if held.repositories == 1 else 'ies'}: delete its images "
                "first (and run registry gc)")
        self.store.delete(name)
        self._changed("project.delete", actor, name, _settings_detail(project))
        return project

    # --- members ---------------------------------------------------------------------

    def members(self, project: str, actor: Actor = OPERATOR) -> list[Member]:
        """The members of a project (for its members)."""
        self.require(actor, project, GUEST, "list the members of")
        return self.store.members(project)

    def add_member(self, project: str, member: str, role: str,
                   actor: Actor = OPERATOR) -> tuple[Member, bool]:
        """Give ``member`` (a user, or ``@group``) ``role`` in ``project`` (project admin);
        the member and whether it is new. A user must exist."""
        check_member_name(member)
        check_role(role)
        self.require(actor, project, ADMIN, "manage the members of")
        if not member.startswith("@") and self.users is not None and \
                self.users.get(member) is None:
            raise ProjectNotFound(f"user {member!r} does not exist (registry user add "
                                  f"{member}; or name a group as @{member})")
        before = [m.role for m in self.store.members(project) if m.name == member]
        entry = Member(project, member, role)
        added = self.store.set_member(entry)
        detail = f"member={member} role={role}"
        if before and not added:
            detail += f" (was {before[0]})"
        self._changed("member.add", actor, project, detail)
        return entry, added

    def remove_member(self, project: str, member: str, actor: Actor = OPERATOR) -> Member:
        """Take ``member``'s role in ``project`` away (project admin)."""
        check_member_name(member)
        self.require(actor, project, ADMIN, "manage the members of")
        current = [m for m in self.store.members(project) if m.name == member]
        if not current or not self.store.remove_member(project, member):
            raise ProjectNotFound(f"{member!r} is not a member of project {project!r}")
        self._changed("member.remove", actor, project,
                      f"member={member} role={current[0].role}")
        return current[0]


def _visibility(project: Project) -> str:
    return "public" if project.public else "private"


def _settings_detail(project: Project) -> str:
    """A project's settings in the audit log: ``visibility=private quota=unlimited`` (a
    quota in bytes)."""
    return f"visibility={_visibility(project)} quota={_quota(project.quota)}"


def _quota(quota: int | None) -> str:
    return "unlimited" if quota is None else str(quota)


def _update_detail(old: Project, new: Project) -> str:
    """What an update changed: ``visibility=public (was private) quota=1024 (was
    unlimited)``;
    ``unchanged`` if nothing did."""
    parts = []
    if old.public != new.public:
        parts.append(f"visibility={_visibility(new)} (was {_visibility(old)})")
    if old.quota != new.quota:
        parts.append(f"quota={_quota(new.quota)} (was {_quota(old.quota)})")
    return " ".join(parts) or f"unchanged: {_settings_detail(new)}"
