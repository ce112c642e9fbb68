"""Access rules from the config file: who may pull, push and delete where.

A rule names a repository pattern, the actions it grants and to whom::

    admins = ["root", "@ops"]                 # users, or @groups: everything everywhere
    groups = { team-a = ["alice", "bob"] }    # group membership (users may also carry groups)

    [[access]]
    repository = "team-a/*"                   # * = one path segment
    groups = ["team-a"]
    actions = ["pull", "push"]

    [[access]]
    repository = "public/**"                  # ** = one or more segments, any depth
    anonymous = true                          # also clients without credentials
    actions = ["pull"]

``users = ["*"]`` means every authenticated user. A principal's actions on a repository are
the union of the actions of every rule that matches it; nothing matches, nothing is allowed.
The catalog (``registry:catalog:*``) is open to everyone: it lists only the repositories the
caller may pull.

With neither rules nor admins configured the *default policy* applies, as in CNCF
distribution: every logged-in user may pull and push every repository (the one rule
:data:`DEFAULT_RULES`), anonymous clients may do nothing. Any rule or admin makes the policy
explicit: then only what the rules grant is allowed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PULL, PUSH, DELETE = "pull", "push", "delete"
ACTIONS: tuple[str, ...] = (PULL, PUSH, DELETE)
EVERY_USER = "*"
_RULE_KEYS = {"repository", "actions", "users", "groups", "anonymous"}
_PATTERN = re.compile(r"[a-z0-9._*-]+(?:/[a-z0-9._*-]+)*")
_PRINCIPAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
NO_ACTIONS: frozenset[str] = frozenset()
ALL_ACTIONS: frozenset[str] = frozenset(ACTIONS)


class RuleError(ValueError):
    """An access rule, group or admin entry is malformed; the message says which."""


@dataclass(frozen=True)
class RobotGrant:
    """What a robot account may do: ``actions`` on the repositories of ``project`` (those
    named ``project/…``), nothing else, whatever the rules say."""

    project: str
    actions: frozenset[str]
    expires_at: float | None = None

    def allowed(self, type_: str, name: str) -> frozenset[str]:
        """The actions on resource ``type_:name``."""
        if type_ == "registry" and name == "catalog":
            return frozenset({"*"})
        if type_ == "repository" and name.startswith(self.project + "/"):
            return self.actions
        return NO_ACTIONS


@dataclass(frozen=True)
class Principal:
    """Who asks: ``subject`` is ``None`` for an anonymous client; ``groups`` are the groups
    it belongs to (from the users file and the config's ``groups``). A robot account
    carries its ``robot`` grant; ``credential`` is the stamp of the secret it logged in
    with, when that is not the password (refresh tokens carry it)."""

    subject: str | None
    groups: frozenset[str] = frozenset()
    robot: RobotGrant | None = None
    credential: str = field(default="", compare=False)

    @property
    def anonymous(self) -> bool:
        """Whether no credentials were presented."""
        return self.subject is None


ANONYMOUS_PRINCIPAL = Principal(None)


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regular expression of a repository pattern: a ``*`` segment matches one
    segment, a ``**`` segment one or more, a ``*`` inside a segment any characters but
    ``/``; everything else matches itself."""
    parts = []
    for segment in pattern.split("/"):
        if segment == "**":
            parts.append(r"[^/]+(?:/[^/]+)*")
        elif segment == "*":
            parts.append(r"[^/]+")
        else:
            parts.append("[^/]*".join(re.escape(piece) for piece in segment.split("*")))
    return re.compile("/".join(parts))


@dataclass(frozen=True)
class AccessRule:
    """One ``[[access]]`` entry."""

    repository: str
    actions: tuple[str, ...]
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    anonymous: bool = False
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", compile_pattern(self.repository))

    def matches(self, repository: str) -> bool:
        """Whether the pattern covers ``repository``."""
        return self._regex.fullmatch(repository) is not None

    def applies_to(self, who: Principal) -> bool:
        """Whether the rule grants anything to ``who``."""
        if self.anonymous:
            return True
        if who.subject is None:
            return False
        return (who.subject in self.users or EVERY_USER in self.users
                or not who.groups.isdisjoint(self.groups))

    def to_dict(self) -> dict[str, Any]:
        """The rule as the config file spells it."""
        out: dict[str, Any] = {"repository": self.repository, "actions": list(self.actions)}
        if self.users:
            out["users"] = list(self.users)
        if self.groups:
            out["groups"] = list(self.groups)
        if self.anonymous:
            out["anonymous"] = True
        return out


def _strings(value: Any, where: str, *, pattern: re.Pattern[str] | None = None,
             allow: Iterable[str] = ()) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise RuleError(f"{where} must be a list of strings, not {value!r}")
    allowed = set(allow)
    for item in value:
        if pattern is not None and item not in allowed and not pattern.fullmatch(item):
            raise RuleError(f"{where}: {item!r} is not a valid name")
    return tuple(value)


def parse_rule(raw: Any, index: int) -> AccessRule:
    """One rule from its config table; RuleError naming ``access[index]`` if malformed."""
    where = f"access[{index}]"
    if isinstance(raw, AccessRule):
        return raw
    if not isinstance(raw, Mapping):
        raise RuleError(f"{where} must be a table, not {raw!r}")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise RuleError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                        f"(known: {', '.join(sorted(_RULE_KEYS))})")
    repository = raw.get("repository")
    if not isinstance(repository, str) or not _PATTERN.fullmatch(repository):
        raise RuleError(f"{where}: repository must be a pattern such as 'team/*' or "
                        f"'public/**', not {repository!r}")
    actions = _strings(raw.get("actions", []), f"{where}.actions")
    if "*" in actions:
        actions = ACTIONS
    bad = [a for a in actions if a not in ACTIONS]
    if bad or not actions:
        raise RuleError(f"{where}.actions must be some of {', '.join(ACTIONS)} (or '*'), "
                        f"not {list(actions)!r}")
    users = _strings(raw.get("users", []), f"{where}.users", pattern=_PRINCIPAL,
                     allow=(EVERY_USER,))
    groups = _strings(raw.get("groups", []), f"{where}.groups", pattern=_PRINCIPAL)
    anonymous = raw.get("anonymous", False)
    if not isinstance(anonymous, bool):
        raise RuleError(f"{where}.anonymous must be true or false, not {anonymous!r}")
    if not (users or groups or anonymous):
        raise RuleError(f"{where} grants to nobody: give users, groups or anonymous = true")
    ordered = tuple(a for a in ACTIONS if a in actions)
    return AccessRule(repository, ordered, users, groups, anonymous)


def parse_rules(raw: Any) -> tuple[AccessRule, ...]:
    """The ``access`` list of tables, checked."""
    if isinstance(raw, Mapping) or not isinstance(raw, list | tuple):
        raise RuleError(f"access must be a list of tables ([[access]]), not {raw!r}")
    return tuple(parse_rule(item, i) for i, item in enumerate(raw))


def parse_groups(raw: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The ``groups`` table (group → member users) as sorted pairs, checked."""
    if isinstance(raw, list | tuple):
        raw = dict(raw)
    if not isinstance(raw, Mapping):
        raise RuleError(f"groups must be a table of group = [users], not {raw!r}")
    out = []
    for name, members in sorted(raw.items()):
        if not isinstance(name, str) or not _PRINCIPAL.fullmatch(name):
            raise RuleError(f"groups: {name!r} is not a valid group name")
        out.append((name, _strings(members, f"groups.{name}", pattern=_PRINCIPAL)))
    return tuple(out)


def parse_admins(raw: Any) -> tuple[str, ...]:
    """The ``admins`` list: user names, or ``@group``."""
    items = _strings(raw, "admins")
    for item in items:
        if not _PRINCIPAL.fullmatch(item.removeprefix("@")):
            raise RuleError(f"admins: {item!r} is not a user or @group")
    return items


DEFAULT_RULES: tuple[AccessRule, ...] = (
    AccessRule("**", (PULL, PUSH), users=(EVERY_USER,)),
)


class AccessPolicy:
    """Answers what a principal may do: the rules, the admins and the config's groups.

    Without ``rules`` and ``admins`` it is the default policy (module docstring):
    ``explicit`` is false and ``rules`` holds :data:`DEFAULT_RULES`."""

    def __init__(self, rules: Sequence[AccessRule] = (), admins: Sequence[str] = (),
                 groups: Sequence[tuple[str, Sequence[str]]] = ()) -> None:
        self.explicit = bool(rules or admins)
        self.rules = tuple(rules) if self.explicit else DEFAULT_RULES
        self.admins = tuple(admins)
        self.groups = tuple((g, tuple(users)) for g, users in groups)
        self.admin_users = frozenset(a for a in admins if not a.startswith("@"))
        self.admin_groups = frozenset(a[1:] for a in admins if a.startswith("@"))
        members: dict[str, set[str]] = {}
        for group, users in groups:
            for user in users:
                members.setdefault(user, set()).add(group)
        self._member_of = {user: frozenset(gs) for user, gs in members.items()}

    def principal(self, subject: str | None, groups: Iterable[str] = ()) -> Principal:
        """The principal of ``subject`` with its own ``groups`` and the config's."""
        if subject is None:
            return ANONYMOUS_PRINCIPAL
        return Principal(subject, frozenset(groups) | self._member_of.get(subject, frozenset()))

    def is_admin(self, who: Principal) -> bool:
        """Whether ``who`` has the admin role."""
        return who.subject is not None and who.robot is None and (
            who.subject in self.admin_users or not who.groups.isdisjoint(self.admin_groups))

    def allowed(self, who: Principal, type_: str, name: str) -> frozenset[str]:
        """The actions ``who`` may take on resource ``type_:name``."""
        if who.robot is not None:
            return who.robot.allowed(type_, name)
        if type_ == "registry" and name == "catalog":
            return frozenset({"*"})
        if type_ != "repository":
            return NO_ACTIONS
        if self.is_admin(who):
            return ALL_ACTIONS
        granted: set[str] = set()
        for rule in self.rules:
            if rule.applies_to(who) and rule.matches(name):
                granted.update(rule.actions)
        return frozenset(granted)

    def project_summary(self) -> str:
        """What projects add to :func:`~registry.auth.explain.summary` (``""``: none)."""
        return ""

    def project_lines(self, who: Principal | None) -> list[str]:
        """What projects add, for ``registry policy show`` (none without projects)."""
        return []

    def project_note(self, who: Principal, repository: str, action: str) -> str | None:
        """Why ``who`` may not take ``action`` on ``repository`` beyond the rules (a policy
        with projects says it; ``None``: the rules alone decide)."""
        return None

    def grant(self, who: Principal, type_: str, name: str, wanted: Iterable[str]
              ) -> tuple[str, ...]:
        """The actions of ``wanted`` (``*`` = all) that ``who`` may have, in a stable order."""
        allowed = self.allowed(who, type_, name)
        wanted = set(wanted)
        if "*" in wanted:
            if type_ == "registry":
                return ("*",) if "*" in allowed else ()
            wanted = set(ACTIONS)
        order = ("*", *ACTIONS)
        extra = sorted(wanted - set(order))
        return tuple(a for a in (*order, *extra) if a in wanted and a in allowed)
