"""The tag policy service: what the CLI, the management API and the request handlers call.

It keeps the rules in a :class:`~registry.tagpolicy.store.TagPolicyStore`, checks pushes
and deletes against the immutability rules, and plans and applies retention runs over a
metadata store.

With a :class:`~registry.audit.changes.ChangeRecorder` (:func:`open_tag_policy` gives it
that of the settings) it logs each change in the audit log, as done by the ``actor`` the
caller names (subject, address; ``None``: the operating-system user at ``local``):
``immutable.add``, ``immutable.remove``, ``retention.add``, ``retention.remove``, and for a
retention run one ``retention.delete`` per manifest removed and a ``retention.run`` summary.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from layerstore.digest import Digest
from registry.audit.changes import ActorAddress, ChangeRecorder, change_event
from registry.config import Settings
from registry.metadata.store import MetadataStore
from registry.projects.store import ProjectStore
from registry.tagpolicy import retention
from registry.tagpolicy.errors import TagImmutable, UnknownProject, UnknownRule
from registry.tagpolicy.rules import (
    CLI_NAMES,
    ArgumentNames,
    ImmutableRule,
    RetentionRule,
    check_project,
    check_rule_id,
    new_immutable,
    new_retention,
    project_of,
)
from registry.tagpolicy.store import DB_FILE, SqliteTagPolicyStore, TagPolicyStore

ProjectCheck = Callable[[str], None]
"""Raises (with a one-line message) if a project may not get rules (it does not exist)."""


class TagPolicyService:
    """Immutability and retention rules of projects."""

    def __init__(self, store: TagPolicyStore, check_project_exists: ProjectCheck | None = None,
                 record: ChangeRecorder | None = None) -> None:
        """Keep rules in ``store``; ``check_project_exists`` vets the project of a new
        rule (any well-formed name without it); ``record`` logs the changes in the audit
        log."""
        self.store = store
        self._exists = check_project_exists
        self.record = record

    def _changed(self, action: str, actor: ActorAddress, project: str, detail: str) -> None:
        if self.record is not None:
            self.record([change_event(action, actor, project=project, detail=detail)])

    def _project(self, project: str) -> str:
        check_project(project)
        if self._exists is not None:
            self._exists(project)
        return project

    # Immutability.

    def add_immutable(self, project: str, repositories: str = "**", tags: str = "**",
                      names: ArgumentNames = CLI_NAMES, *, actor: ActorAddress = None
                      ) -> ImmutableRule:
        """Add an immutability rule (checked first: nothing is stored on bad input; errors
        call the arguments by ``names``)."""
        rule = new_immutable(project, repositories, tags, names)
        self._project(project)
        added = self.store.add_immutable(rule)
        self._changed("immutable.add", actor, project, _immutable_detail(added))
        return added

    def immutable_rules(self, project: str | None = None) -> list[ImmutableRule]:
        """The immutability rules of ``project`` (all with ``None``)."""
        return self.store.immutable_rules(None if project is None else check_project(project))

    def remove_immutable(self, project: str, rule_id: object, *,
                         actor: ActorAddress = None) -> None:
        """Remove an immutability rule; :class:`UnknownRule` if the project has none with
        that id."""
        number = check_rule_id(rule_id)
        old = [r for r in self.store.immutable_rules(check_project(project)) if r.id == number]
        if not self.store.remove_immutable(project, number):
            raise UnknownRule(f"RULE: no immutability rule {number} in project {project!r}")
        self._changed("immutable.remove", actor, project,
                      _immutable_detail(old[0]) if old else f"rule={number}")

    def protecting(self, repository: str, tag: str,
                   rules: list[ImmutableRule] | None = None) -> ImmutableRule | None:
        """The first immutability rule that protects ``tag`` of ``repository``, if any."""
        project = project_of(repository)
        if project is None:
            return None
        if rules is None:
            rules = self.store.immutable_rules(project)
        return next((rule for rule in rules if rule.protects(repository, tag)), None)

    def protector(self, repository: str) -> Callable[[str], bool] | None:
        """Whether a tag of ``repository`` is protected, as a predicate over the rules read
        now (for ``delete_manifest(protected=)``); ``None`` when no rule applies."""
        project = project_of(repository)
        if project is None:
            return None
        rules = self.store.immutable_rules(project)
        if not rules:
            return None
        return lambda tag: any(rule.protects(repository, tag) for rule in rules)

    def check_push(self, meta: MetadataStore, repository: str, tags: tuple[str, ...],
                   digest: Digest) -> tuple[str, ...]:
        """The tags of a push that immutability rules protect (to be written with
        ``fixed=``); :class:`TagImmutable` if one already points at another manifest."""
        project = project_of(repository)
        if project is None or not tags:
            return ()
        rules = self.store.immutable_rules(project)
        if not rules:
            return ()
        fixed: list[str] = []
        for tag in tags:
            rule = self.protecting(repository, tag, rules)
            if rule is None:
                continue
            current = meta.resolve(repository, tag)
            if current is not None and current.digest != digest:
                raise self.refusal(repository, tag, rule, current.digest, "move")
            fixed.append(tag)
        return tuple(fixed)

    def refusal(self, repository: str, tag: str, rule: ImmutableRule | None,
                digest: Digest, verb: str) -> TagImmutable:
        """The error for moving (``verb`` "move") or deleting ("delete") a protected tag."""
        by = rule.describe() if rule is not None else "an immutability rule"
        return TagImmutable(
            f"tag {tag!r} of {repository!r} is immutable ({by}): it points at {digest} and "
            f"may not {'be moved to another manifest' if verb == 'move' else 'be deleted'}",
            repository=repository, tag=tag, rule=rule.id if rule is not None else 0)

    def check_delete_tag(self, meta: MetadataStore, repository: str, tag: str) -> bool:
        """Whether ``tag`` may be deleted: :class:`TagImmutable` if it is protected and
        exists; ``False`` if it is protected and does not exist (do not delete it: a push
        may be making it now)."""
        rule = self.protecting(repository, tag)
        if rule is None:
            return True
        current = meta.resolve(repository, tag)
        if current is not None:
            raise self.refusal(repository, tag, rule, current.digest, "delete")
        return False

    # Retention.

    def add_retention(self, project: str, kind: str, count: object = None,
                      repositories: str = "**", tags: str = "**",
                      names: ArgumentNames = CLI_NAMES, *, actor: ActorAddress = None
                      ) -> RetentionRule:
        """Add a retention rule (checked first: nothing is stored on bad input; errors call
        the arguments by ``names``)."""
        rule = new_retention(project, repositories, tags, kind, count, names)
        self._project(project)
        added = self.store.add_retention(rule)
        self._changed("retention.add", actor, project, _retention_detail(added))
        return added

    def retention_rules(self, project: str | None = None) -> list[RetentionRule]:
        """The retention rules of ``project`` (all with ``None``)."""
        return self.store.retention_rules(None if project is None else check_project(project))

    def remove_retention(self, project: str, rule_id: object, *,
                         actor: ActorAddress = None) -> None:
        """Remove a retention rule; :class:`UnknownRule` if the project has none with that
        id."""
        number = check_rule_id(rule_id)
        old = [r for r in self.store.retention_rules(check_project(project)) if r.id == number]
        if not self.store.remove_retention(project, number):
            raise UnknownRule(f"RULE: no retention rule {number} in project {project!r}")
        self._changed("retention.remove", actor, project,
                      _retention_detail(old[0]) if old else f"rule={number}")

    def plan_retention(self, meta: MetadataStore, project: str | None = None,
                       now: float | None = None) -> retention.RetentionPlan:
        """What a retention run would remove (of ``project`` only, if given)."""
        if project is not None:
            check_project(project, "--project")
        return retention.plan(meta, self.store.retention_rules(project),
                              self.store.immutable_rules(project), project=project, now=now)

    def run_retention(self, meta: MetadataStore, planned: retention.RetentionPlan, *,
                      actor: ActorAddress = None) -> retention.RetentionResult:
        """Remove what ``planned`` lists (see :func:`retention.apply`); a manifest that an
        immutable tag points at by then is skipped. Logs a ``retention.delete`` per manifest
        removed and a ``retention.run`` saying what the run did."""
        result = retention.apply(meta, planned, self.protector)
        if self.record is not None:
            events = [change_event("retention.delete", actor, repository=r.repository,
                                   reference=str(r.digest), digest=str(r.digest),
                                   detail=f"tags={','.join(r.tags) or '-'} ({r.reason})")
                      for r in result.removed]
            events.append(change_event(
                "retention.run", actor, project=planned.project or "",
                detail=f"removed={len(result.removed)} skipped={len(result.skipped)} "
                       f"kept={planned.kept} repositories={planned.repositories}"))
            self.record(events)
        return result

    def close(self) -> None:
        """Release the store."""
        self.store.close()


def _immutable_detail(rule: ImmutableRule) -> str:
    return f"rule={rule.id} repositories={rule.repositories} tags={rule.tags}"


def _retention_detail(rule: RetentionRule) -> str:
    keep = rule.kind if rule.count is None else f"{rule.kind}={rule.count}"
    return (f"rule={rule.id} repositories={rule.repositories} tags={rule.tags} "
            f"keep={keep}")


def projects_of(store: ProjectStore, what: str = "PROJECT") -> ProjectCheck:
    """A :data:`ProjectCheck` over the project records of ``store``: a rule's project
    must exist (:class:`UnknownProject` naming it and ``what`` otherwise)."""

    def check(project: str) -> None:
        if store.get(project) is None:
            raise UnknownProject(f"{what}: project {project!r} does not exist (registry "
                                 f"project create {project})")

    return check


def open_tag_policy(settings: Settings, meta: MetadataStore | None = None,
                    check_project_exists: ProjectCheck | None = None) -> TagPolicyService:
    """The service over the rules of ``settings``: ``<root>/tagpolicy.db``, or the
    PostgreSQL database of ``metadata_url`` (through ``meta``'s pool when it is that
    store); it logs its changes in the audit log of ``settings``."""
    from registry.audit import change_recorder

    record = change_recorder(settings)
    if not settings.metadata_url:
        return TagPolicyService(SqliteTagPolicyStore(Path(settings.root) / DB_FILE),
                                check_project_exists, record)
    from registry.metadata.postgres import PostgresMetadataStore
    from registry.tagpolicy.postgres import PostgresTagPolicyStore

    if not isinstance(meta, PostgresMetadataStore):
        meta = PostgresMetadataStore(settings.metadata_url, migrate=False, min_size=1,
                                     max_size=4)
    return TagPolicyService(PostgresTagPolicyStore(meta), check_project_exists, record)
