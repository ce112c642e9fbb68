"""The access policy in words: why a request is denied, the one-line summary the server
logs when it starts, and the listing of ``registry policy show``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from registry.auth.access import Scope
from registry.auth.rules import ACTIONS, EVERY_USER, AccessPolicy, AccessRule, Principal

DEFAULT_SUMMARY = ("default policy (no access rules or admins configured): every logged-in "
                   "user may pull and push every repository; anonymous clients may do nothing")


@dataclass(frozen=True)
class Denial:
    """The first action of a request that the policy refuses, and why."""

    scope: Scope
    action: str
    reason: str

    def record(self) -> dict[str, str]:
        """The access record of the ``detail`` of a DENIED error."""
        return {"Type": self.scope.type, "Name": self.scope.name, "Action": self.action,
                "Reason": self.reason}


def _who(who: Principal) -> str:
    if who.subject is None:
        return "anonymous clients"
    groups = f" (groups: {', '.join(sorted(who.groups))})" if who.groups else ""
    return f"user {who.subject}{groups}"


def reason(policy: AccessPolicy, who: Principal, scope: Scope, action: str) -> str:
    """Why ``who`` may not take ``action`` on ``scope``, in one sentence."""
    if who.robot is not None:
        grant = who.robot
        may = ",".join(a for a in ACTIONS if a in grant.actions) or "nothing"
        return (f"robot account {who.subject} may {may} only in project {grant.project} "
                f"({grant.project}/...), not {action} on {scope.name}")
    if scope.type != "repository":
        return f"no rule covers {scope.type}:{scope.name}"
    note = policy.project_note(who, scope.name, action)
    if note is not None:
        return note
    target = f"{action} on {scope.name}"
    if policy.explicit:
        hint = "; log in" if who.anonymous else ""
        return f"no rule grants {target} to {_who(who)}{hint}"
    if who.anonymous:
        return (f"no rule grants {target} to anonymous clients: under the default policy "
                "(no access rules configured) only logged-in users may pull and push; log in")
    return (f"no rule grants {target} to {_who(who)}: the default policy (no access rules "
            f"configured) grants logged-in users pull and push only; {action} needs an "
            "[[access]] rule or admins")


def denial(policy: AccessPolicy, who: Principal, scopes: Sequence[Scope]) -> Denial | None:
    """The first action of ``scopes`` the policy does not give ``who`` (``None``: all are
    given, so a refusal lies with the token, not with the rules)."""
    for scope in scopes:
        allowed = policy.allowed(who, scope.type, scope.name)
        for action in scope.actions:
            if action not in allowed:
                return Denial(scope, action, reason(policy, who, scope, action))
    return None


def summary(policy: AccessPolicy) -> str:
    """The effective policy in one line (the server's start-up log)."""
    if not policy.explicit:
        return DEFAULT_SUMMARY + policy.project_summary()
    parts = [f"{len(policy.rules)} access rule{'s' if len(policy.rules) != 1 else ''}"]
    if policy.admins:
        parts.append(f"admins {', '.join(policy.admins)}")
    if policy.groups:
        parts.append(f"{len(policy.groups)} group{'s' if len(policy.groups) != 1 else ''}")
    return (f"explicit policy ({'; '.join(parts)}): only what a rule grants is allowed"
            f"{policy.project_summary()}")


def _grantees(rule: AccessRule) -> str:
    names = []
    if rule.anonymous:
        names.append("everyone, anonymous clients too")
    for user in rule.users:
        names.append("every logged-in user" if user == EVERY_USER else f"user {user}")
    names += [f"group {g}" for g in rule.groups]
    return ", ".join(names)


def _table(rows: Sequence[tuple[str, str, str]]) -> list[str]:
    width = max((len(r[0]) for r in rows), default=0)
    awidth = max((len(r[1]) for r in rows), default=0)
    return [f"  {a:<{width}}  {b:<{awidth}}  {c}".rstrip() for a, b, c in rows]


def render(policy: AccessPolicy, who: Principal | None = None) -> list[str]:
    """What ``registry policy show`` prints: every rule, or (``who``) what one principal
    may do where."""
    lines = [f"policy: {summary(policy)}"]
    if who is None:
        if policy.admins:
            lines.append(f"admins (every action on every repository): "
                         f"{', '.join(policy.admins)}")
        for group, members in policy.groups:
            lines.append(f"group {group}: {', '.join(members) or '(no members)'}")
        lines.append("rules (a principal's actions are the union of the rules that match):")
        lines += _table([(r.repository, ",".join(r.actions), _grantees(r))
                         for r in policy.rules])
        lines += policy.project_lines(None)
        lines.append("anything else: nothing")
        return lines
    lines.append(_who(who))
    if policy.is_admin(who):
        lines += _table([("**", ",".join(ACTIONS), "admin")])
        return lines
    rows = [(r.repository, ",".join(r.actions), _grantees(r))
            for r in policy.rules if r.applies_to(who)]
    lines += _table(rows)
    projects = policy.project_lines(who)
    lines += projects
    lines.append("  anything else: nothing" if rows or projects else "  nothing anywhere")
    return lines
