"""Project roles in the access decision.

:class:`ProjectRoles` keeps a snapshot of every project and its members in memory, keyed by
project name and member name, and re-reads it only when the store's change counter moved
(looked at no more than every :data:`REFRESH_SECONDS`): a role lookup on the token path is
a few dictionary reads, however many projects there are.

:class:`ProjectPolicy` is the :class:`~registry.auth.rules.AccessPolicy` with projects:

* a repository outside any project (no ``/``, or a first segment that names no project)
  is decided by the rules alone, as before;
* in a project, a principal's actions are the union of what its project role grants
  (its own and its groups', the highest counts), ``pull`` for everyone in a public project,
  and what the access rules grant; system admins may do everything;
* under the *default policy* (no rules, no admins configured) the default rule (every
  logged-in user may pull and push) does not reach into projects: creating a project is
  what makes its repositories private to its members.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from registry.auth.rules import ALL_ACTIONS, NO_ACTIONS, PULL, AccessPolicy, Principal
from registry.projects.model import (
    ROLE_ACTIONS,
    ROLE_RANK,
    Member,
    Project,
    project_of,
)
from registry.projects.store import ProjectStore

REFRESH_SECONDS = 0.5


@dataclass(frozen=True)
class ProjectEntry:
    """A project and its members as the policy looks them up."""

    project: Project
    users: Mapping[str, str] = field(default_factory=dict)
    groups: Mapping[str, str] = field(default_factory=dict)

    def role(self, who: Principal) -> str | None:
        """The highest role of ``who`` (itself or one of its groups), or ``None``."""
        if who.subject is None:
            return None
        best = self.users.get(who.subject)
        for group in who.groups:
            role = self.groups.get(group)
            if role is not None and (best is None or ROLE_RANK[role] > ROLE_RANK[best]):
                best = role
        return best

    def actions(self, who: Principal) -> frozenset[str]:
        """What the project grants ``who``: its role's actions, ``pull`` if public."""
        role = self.role(who)
        granted = ROLE_ACTIONS[role] if role is not None else NO_ACTIONS
        if self.project.public:
            granted = granted | {PULL}
        return granted


def build_entries(projects: list[Project], members: list[Member]) -> dict[str, ProjectEntry]:
    """The lookup table of ``projects`` and their ``members``."""
    users: dict[str, dict[str, str]] = {p.name: {} for p in projects}
    groups: dict[str, dict[str, str]] = {p.name: {} for p in projects}
    for m in members:
        if m.project in users:
            if m.is_group:
                groups[m.project][m.name[1:]] = m.role
            else:
                users[m.project][m.name] = m.role
    return {p.name: ProjectEntry(p, users[p.name], groups[p.name]) for p in projects}


class ProjectRoles:
    """The cached snapshot of a :class:`ProjectStore` (module docstring)."""

    def __init__(self, store: ProjectStore, refresh_seconds: float = REFRESH_SECONDS) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._entries: dict[str, ProjectEntry] = {}
        self._generation = -1
        self._checked = float("-inf")

    def invalidate(self) -> None:
        """Look at the store on the next lookup (after a write of this process)."""
        with self._lock:
            self._checked = float("-inf")

    def entries(self) -> dict[str, ProjectEntry]:
        """Every project by name, at most :attr:`refresh_seconds` old."""
        now = time.monotonic()
        if now - self._checked < self.refresh_seconds:
            return self._entries
        with self._lock:
            if now - self._checked < self.refresh_seconds:
                return self._entries
            generation = self.store.generation()
            if generation != self._generation:
                # Read the counter first: a write racing the reload shows up next time.
                self._entries = build_entries(self.store.projects(), self.store.members())
                self._generation = generation
            self._checked = now
            return self._entries

    def entry(self, project: str) -> ProjectEntry | None:
        """The project named ``project``, or ``None``."""
        return self.entries().get(project)

    def of_repository(self, repository: str) -> ProjectEntry | None:
        """The project ``repository`` belongs to, or ``None``."""
        name = project_of(repository)
        return None if name is None else self.entries().get(name)


def _who(who: Principal) -> str:
    return "anonymous clients" if who.subject is None else f"user {who.subject}"


class ProjectPolicy(AccessPolicy):
    """The access rules and the project roles, combined by union (module docstring)."""

    def __init__(self, base: AccessPolicy, roles: ProjectRoles) -> None:
        super().__init__(base.rules if base.explicit else (), base.admins, base.groups)
        self.roles = roles

    def allowed(self, who: Principal, type_: str, name: str) -> frozenset[str]:
        """The actions ``who`` may take on ``type_:name``: the rules' and the project's."""
        if who.robot is not None:
            return who.robot.allowed(type_, name)
        if type_ != "repository":
            return super().allowed(who, type_, name)
        entry = self.roles.of_repository(name)
        if entry is None:
            return super().allowed(who, type_, name)
        if self.is_admin(who):
            return ALL_ACTIONS
        granted = entry.actions(who)
        if self.explicit:
            granted = granted | super().allowed(who, type_, name)
        return granted

    def project_note(self, who: Principal, repository: str, action: str) -> str | None:
        """Why ``who`` may not ``action`` ``repository`` when it lies in a project."""
        entry = self.roles.of_repository(repository)
        if entry is None:
            return None
        project = entry.project.name
        target = f"{action} on {repository}"
        rules = "no rule or project role" if self.explicit else "no project role"
        role = entry.role(who)
        if who.subject is None:
            state = "public: anonymous clients may pull only" if entry.project.public \
                else "private"
            return f"{rules} grants {target} to anonymous clients: project {project} is " \
                   f"{state}; log in"
        if role is None:
            why = f"{_who(who)} is not a member of project {project}"
        else:
            allowed = ",".join(a for a in ("pull", "push", "delete")
                               if a in ROLE_ACTIONS[role])
            why = f"{_who(who)} has role {role} in project {project}, which allows {allowed}"
        note = "" if self.explicit else (" (the default policy does not apply inside "
                                         "projects; ask a project admin for a role)")
        return f"{rules} grants {target}: {why}{note}"

    def project_lines(self, who: Principal | None) -> list[str]:
        """The projects for ``registry policy show``: each with its visibility and members,
        or (``who``) the roles ``who`` holds and the public projects."""
        entries = self.roles.entries()
        if not entries:
            return []
        scope = "add to the rules" if self.explicit else "replace the default policy there"
        if who is None:
            lines = [f"projects (<name>/**; members' roles {scope}):"]
            for name, entry in sorted(entries.items()):
                members = [f"{u} {r}" for u, r in sorted(entry.users.items())]
                members += [f"@{g} {r}" for g, r in sorted(entry.groups.items())]
                visibility = "public" if entry.project.public else "private"
                lines.append(f"  {name}  {visibility}  {', '.join(members) or '(no members)'}")
            return lines
        lines = []
        for name, entry in sorted(entries.items()):
            actions = entry.actions(who)
            if actions:
                role = entry.role(who)
                how = f"project role {role}" if role else "public project"
                order = [a for a in ("pull", "push", "delete") if a in actions]
                lines.append(f"  {name}/**  {','.join(order)}  {how}")
        return lines

    def project_summary(self) -> str:
        """How many projects there are and what they do, for the one-line summary."""
        count = len(self.roles.entries())
        if not count:
            return ""
        scope = "add to the rules" if self.explicit else "replace the default policy there"
        return f"; {count} project{'s' if count != 1 else ''}: their members' roles {scope}"
