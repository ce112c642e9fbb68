"""The rules of tag policies as values, and the checks that make them.

An :class:`ImmutableRule` protects the tags matching ``tags`` in the repositories of its
project matching ``repositories``. A :class:`RetentionRule` keeps, in the repositories it
matches, the tagged manifests that have a tag matching ``tags`` and that are among the
``count`` most recently pushed (``latest``), were pushed within the last ``count`` days
(``days``), or all of them (``always``). Repository patterns match the repository path
after the project (``team/web/app`` is ``web/app`` in project ``team``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.tagpolicy.errors import InvalidRule
from registry.tagpolicy.patterns import compile_pattern

KINDS = ("latest", "days", "always")
MAX_COUNT = 1_000_000
_PROJECT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")


def project_of(repository: str) -> str | None:
    """The project of a repository (its first path segment), or ``None`` without a ``/``."""
    head, sep, _ = repository.partition("/")
    return head if sep else None


def check_project(name: object, what: str = "PROJECT") -> str:
    """A project name (one repository path component); :class:`InvalidRule` otherwise."""
    if not isinstance(name, str) or not _PROJECT.fullmatch(name) or len(name) > 255:
        raise InvalidRule(f"{what}: {name!r} is not a project name (lowercase letters, digits "
                          "and '._-' separators: the first path segment of a repository)")
    return name


def check_count(value: object, what: str) -> int:
    """A positive integer from an int or its decimal text; :class:`InvalidRule` otherwise."""
    if isinstance(value, str) and re.fullmatch(r"\+?[0-9]+", value.strip()):
        value = int(value.strip())
    if type(value) is not int or not 1 <= value <= MAX_COUNT:
        raise InvalidRule(f"{what}: {value!r} is not a positive integer (1..{MAX_COUNT})")
    return value


def check_rule_id(value: object, what: str = "RULE") -> int:
    """A rule id (a positive integer); :class:`InvalidRule` otherwise."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if type(value) is not int or value < 1:
        raise InvalidRule(f"{what}: {value!r} is not a rule id (a positive integer)")
    return value


@dataclass(frozen=True)
class ImmutableRule:
    """Tags matching ``tags`` in repositories matching ``repositories`` may not move or go."""

    id: int
    project: str
    repositories: str
    tags: str
    created_at: float = 0.0

    def protects(self, repository: str, tag: str) -> bool:
        """Whether this rule protects ``tag`` of ``repository`` (a repository of its
        project)."""
        if project_of(repository) != self.project:
            return False
        rest = repository[len(self.project) + 1:]
        return (compile_pattern(self.repositories, "repositories").matches(rest)
                and compile_pattern(self.tags, "tags").matches(tag))

    def describe(self) -> str:
        """The rule in a few words, for messages."""
        return (f"immutability rule {self.id} of project {self.project!r} "
                f"(repositories {self.repositories!r}, tags {self.tags!r})")

    def to_json(self) -> dict[str, object]:
        """The rule as JSON (the API and ``--json``)."""
        return {"id": self.id, "project": self.project, "repositories": self.repositories,
                "tags": self.tags, "created_at": self.created_at}


@dataclass(frozen=True)
class RetentionRule:
    """Keep the matching tagged manifests that satisfy ``kind``/``count`` (module doc)."""

    id: int
    project: str
    repositories: str
    tags: str
    kind: str
    count: int | None = None
    created_at: float = 0.0

    def applies_to(self, repository: str) -> bool:
        """Whether the rule covers ``repository``."""
        if project_of(repository) != self.project:
            return False
        rest = repository[len(self.project) + 1:]
        return compile_pattern(self.repositories, "repositories").matches(rest)

    def describe(self) -> str:
        """The rule in a few words."""
        keep = {"latest": f"the {self.count} most recently pushed",
                "days": f"those pushed within {self.count} days",
                "always": "all"}[self.kind]
        return (f"retention rule {self.id} of project {self.project!r}: in repositories "
                f"{self.repositories!r}, of the manifests tagged {self.tags!r} keep {keep}")

    def to_json(self) -> dict[str, object]:
        """The rule as JSON."""
        return {"id": self.id, "project": self.project, "repositories": self.repositories,
                "tags": self.tags, "kind": self.kind, "count": self.count,
                "created_at": self.created_at}


@dataclass(frozen=True)
class ArgumentNames:
    """What error messages call each argument of a rule (the CLI's flags, the API's
    fields)."""

    project: str = "PROJECT"
    repositories: str = "--repos"
    tags: str = "--tags"
    kind: str = "kind"
    latest: str = "--keep-latest"
    days: str = "--keep-days"


CLI_NAMES = ArgumentNames()


def new_immutable(project: str, repositories: str, tags: str,
                  names: ArgumentNames = CLI_NAMES) -> ImmutableRule:
    """A checked immutability rule, not yet stored (id 0)."""
    return ImmutableRule(0, check_project(project, names.project),
                         compile_pattern(repositories, names.repositories).text,
                         compile_pattern(tags, names.tags).text)


def new_retention(project: str, repositories: str, tags: str, kind: str,
                  count: object = None, names: ArgumentNames = CLI_NAMES) -> RetentionRule:
    """A checked retention rule, not yet stored (id 0)."""
    if kind not in KINDS:
        raise InvalidRule(f"{names.kind}: {kind!r} is not one of {', '.join(KINDS)}")
    flag = names.latest if kind == "latest" else names.days
    number = None if kind == "always" else check_count(count, flag)
    return RetentionRule(0, check_project(project, names.project),
                         compile_pattern(repositories, names.repositories).text,
                         compile_pattern(tags, names.tags).text, kind, number)
