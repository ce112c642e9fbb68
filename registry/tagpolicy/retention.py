"""Retention runs: which manifests the retention rules let go, and removing exactly those.

Per repository that at least one rule covers (a repository no rule covers is left alone):

- the *artifacts* are its tagged manifests; each rule keeps the artifacts with a tag
  matching its tag pattern that satisfy its condition (the ``count`` most recently pushed,
  pushed within ``count`` days, or all); an artifact with a tag an immutability rule
  protects is always kept. The rules combine by union.
- untagged manifests that no tag reaches (through index children or referrers) are not
  retention's business: ``registry gc --delete-untagged`` removes them after its grace
  period, as before.
- the removals are the manifests reachable from the artifacts no rule keeps (an index's
  children, referrers whose subject goes) minus everything reachable from what is kept: a
  child of a kept index is never removed, a referrer goes with its subject.

A run removes the planned manifests (parents before their children) from the metadata, each
with all its tags; their blobs are freed by garbage collection. A manifest whose tags changed
since the plan was made (a push re-tagged it) is skipped and reported.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from layerstore.digest import Digest
from registry.metadata.store import ManifestRecord, MetadataStore, TagProtected
from registry.tagpolicy.patterns import compile_pattern
from registry.tagpolicy.rules import ImmutableRule, RetentionRule, project_of

DAY = 86400.0


@dataclass(frozen=True, order=True)
class Removal:
    """One manifest a retention run removes, with the tags it takes along and why."""

    repository: str
    digest: Digest
    tags: tuple[str, ...]
    reason: str

    def line(self) -> str:
        """``repository@digest  tags=a,b  reason`` (what ``--dry-run`` prints)."""
        return f"{self.repository}@{self.digest}\ttags={','.join(self.tags) or '-'}\t{self.reason}"


@dataclass(frozen=True)
class RetentionPlan:
    """What a retention run removes, in removal order, and how many artifacts it keeps
    (of ``project`` only, if the plan was made for one)."""

    removals: tuple[Removal, ...]
    kept: int
    repositories: int
    project: str | None = None


@dataclass(frozen=True)
class RetentionResult:
    """What a run removed and what it skipped because it changed after planning."""

    removed: tuple[Removal, ...]
    skipped: tuple[Removal, ...]


def _closure(roots: Iterable[Digest], records: dict[Digest, ManifestRecord],
             referrers: dict[Digest, list[Digest]]) -> dict[Digest, Digest | None]:
    """Every manifest reachable from ``roots``, each with the one it was reached from."""
    seen: dict[Digest, Digest | None] = {}
    stack: list[tuple[Digest, Digest | None]] = [(d, None) for d in roots if d in records]
    while stack:
        digest, parent = stack.pop(0)
        if digest in seen:
            continue
        seen[digest] = parent
        stack.extend((ref, digest) for ref in records[digest].references if ref in records)
        stack.extend((ref, digest) for ref in referrers.get(digest, ()))
    return seen


def _kept_by(rule: RetentionRule, artifacts: dict[Digest, list[str]],
             records: dict[Digest, ManifestRecord], now: float) -> set[Digest]:
    pattern = compile_pattern(rule.tags, "tags")
    matching = [d for d, tags in artifacts.items() if any(pattern.matches(t) for t in tags)]
    if rule.kind == "latest":
        matching.sort(key=lambda d: (-records[d].created_at, str(d)))
        return set(matching[:rule.count or 0])
    if rule.kind == "days":
        cutoff = now - (rule.count or 0) * DAY
        return {d for d in matching if records[d].created_at >= cutoff}
    return set(matching)


def _plan_repository(meta: MetadataStore, repository: str, rules: list[RetentionRule],
                     immutable: list[ImmutableRule], now: float
                     ) -> tuple[list[Removal], int]:
    records = {record.digest: record for record in meta.manifests(repository)}
    artifacts: dict[Digest, list[str]] = defaultdict(list)
    for tag, digest in meta.tagged(repository).items():
        if digest in records:
            artifacts[digest].append(tag)
    referrers: dict[Digest, list[Digest]] = defaultdict(list)
    for record in records.values():
        if record.subject is not None:
            referrers[record.subject].append(record.digest)
    retained: set[Digest] = set()
    for rule in rules:
        retained |= _kept_by(rule, artifacts, records, now)
    for digest, tags in artifacts.items():
        if any(r.protects(repository, t) for r in immutable for t in tags):
            retained.add(digest)
    reached = _closure(artifacts, records, referrers)
    standalone = set(records) - set(reached)
    keep = _closure(retained | standalone, records, referrers)
    doomed = [d for d in sorted(artifacts, key=str) if d not in retained]
    going = _closure(doomed, records, referrers)
    removals: list[Removal] = []
    for digest, parent in going.items():
        if digest in keep:
            continue
        if parent is None:
            reason = "kept by no retention rule"
        elif digest in records[parent].references:
            reason = f"child of {parent}"
        else:
            reason = f"referrer of {parent}"
        removals.append(Removal(repository, digest, tuple(sorted(artifacts.get(digest, ()))),
                                reason))
    return removals, len(retained)


def plan(meta: MetadataStore, rules: list[RetentionRule], immutable: list[ImmutableRule],
         *, project: str | None = None, now: float | None = None) -> RetentionPlan:
    """The removals the ``rules`` call for (only in ``project`` if given)."""
    now = time.time() if now is None else now
    removals: list[Removal] = []
    kept = covered = 0
    if not rules:
        return RetentionPlan((), 0, 0, project)
    for repository in meta.repositories():
        owner = project_of(repository)
        if owner is None or (project is not None and owner != project):
            continue
        applying = [rule for rule in rules if rule.applies_to(repository)]
        if not applying:
            continue
        covered += 1
        found, retained = _plan_repository(meta, repository, applying, immutable, now)
        removals.extend(found)
        kept += retained
    return RetentionPlan(tuple(removals), kept, covered, project)


def apply(meta: MetadataStore, planned: RetentionPlan,
          protector: Callable[[str], Callable[[str], bool] | None] | None = None
          ) -> RetentionResult:
    """Remove the planned manifests, in order; skip one whose tags are no longer those
    planned (or that is gone), or, with ``protector`` (repository -> which of its tags are
    protected), that a protected tag points at when it is removed."""
    removed: list[Removal] = []
    guards: dict[str, Callable[[str], bool] | None] = {}
    skipped: list[Removal] = []
    current: dict[str, dict[Digest, set[str]]] = {}
    for removal in planned.removals:
        if removal.repository not in current:
            tags: dict[Digest, set[str]] = defaultdict(set)
            for tag, digest in meta.tagged(removal.repository).items():
                tags[digest].add(tag)
            current[removal.repository] = tags
        if current[removal.repository].get(removal.digest, set()) != set(removal.tags):
            skipped.append(removal)
            continue
        if protector is not None and removal.repository not in guards:
            guards[removal.repository] = protector(removal.repository)
        try:
            gone = meta.delete_manifest(removal.repository, removal.digest,
                                        protected=guards.get(removal.repository))
        except TagProtected:
            gone = False
        (removed if gone else skipped).append(removal)
    return RetentionResult(tuple(removed), tuple(skipped))
