"""The errors of tag policies: every one carries a one-line message naming the argument or
rule concerned."""

from __future__ import annotations


class TagPolicyError(Exception):
    """A tag policy operation that cannot be done."""


class InvalidRule(TagPolicyError):
    """An argument of a rule is malformed (the message names it)."""


class UnknownRule(TagPolicyError):
    """No rule with that id in that project."""


class UnknownProject(TagPolicyError):
    """A rule names a project that does not exist."""


class TagImmutable(TagPolicyError):
    """A push or delete would move or remove a tag an immutability rule protects."""

    def __init__(self, message: str, *, repository: str, tag: str, rule: int) -> None:
        super().__init__(message)
        self.repository = repository
        self.tag = tag
        self.rule = rule
