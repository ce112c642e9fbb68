"""Tag policies on the real stores (SQLite files and a real PostgreSQL): patterns, rule
checks (bad input changes nothing), the rule stores, the protected-tag write of
``put_manifest`` (two racing writers of a new immutable tag: exactly one wins) and the
retention planner over indexes, children, referrers and untagged manifests."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerstore.digest import Digest
from layerstore.oci import MediaType
from registry.metadata.postgres import PostgresMetadataStore
from registry.metadata.sqlite import SqliteMetadataStore
from registry.metadata.store import ManifestRecord, MetadataStore, TagMoved, TagProtected
from registry.tagpolicy.errors import InvalidRule, TagImmutable, UnknownRule
from registry.tagpolicy.patterns import compile_pattern
from registry.tagpolicy.postgres import PostgresTagPolicyStore
from registry.tagpolicy.service import TagPolicyService
from registry.tagpolicy.store import SqliteTagPolicyStore
from registry.testing.deadline import time_limit
from registry.testing.engines import PostgresEngine

REPO = "team/app"
DAY = 86400.0
NOW = 1_800_000_000.0


@pytest.fixture(autouse=True)
def deadline() -> Iterator[None]:
    """Fail a case that hangs instead of the session."""
    with time_limit(240):
        yield


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path
           ) -> Iterator[tuple[MetadataStore, TagPolicyService]]:
    """A metadata store and a tag policy service on SQLite or on PostgreSQL."""
    if request.param == "sqlite":
        meta: MetadataStore = SqliteMetadataStore(tmp_path / "metadata.db")
        policy = TagPolicyService(SqliteTagPolicyStore(tmp_path / "tagpolicy.db"))
    else:
        engine: PostgresEngine = request.getfixturevalue("postgres")
        name = "tp_" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:20]
        pg = PostgresMetadataStore(engine.create_database(name))
        meta, policy = pg, TagPolicyService(PostgresTagPolicyStore(pg))
    try:
        yield meta, policy
    finally:
        policy.close()
        meta.close()


def digest(seed: str) -> Digest:
    """A digest made from ``seed``."""
    return Digest.from_bytes(seed.encode())


def record(seed: str, *, at: float = NOW, refs: tuple[Digest, ...] = (),
           subject: Digest | None = None, index: bool = False) -> ManifestRecord:
    """A manifest record named by ``seed``."""
    return ManifestRecord(
        digest=digest(f"manifest {seed}"),
        media_type=MediaType.OCI_INDEX if index else MediaType.OCI_MANIFEST, size=100,
        references=refs or (digest(f"config {seed}"), digest(f"layer {seed}")),
        subject=subject, created_at=at)


# Patterns and rule checks.


@pytest.mark.unit
@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("v*", "v1.2.3", True), ("v*", "latest", False), ("**", "a/b/c", True),
    ("*", "a/b", False), ("*", "app", True), ("web/*", "web/app", True),
    ("{latest,stable}", "stable", True), ("{latest,stable}", "stables", False),
    ("release-?", "release-1", True), ("release-?", "release-10", False),
    ("**/app", "x/y/app", True), ("v1.*", "v1x2", False),
])
def test_patterns(pattern: str, name: str, matches: bool) -> None:
    assert compile_pattern(pattern, "--tags").matches(name) is matches


@pytest.mark.unit
@pytest.mark.parametrize(("pattern", "problem"), [
    ("", "empty"), ("a b", "' '"), ("v{1,2", "never closed"), ("v}", "without"),
    ("{a,{b}}", "nests"), ("a,b", "outside braces"), ("{a,}", "empty alternative"),
    ("[ab]", "'['"), ("x" * 256, "longer than 255"),
])
def test_malformed_patterns(pattern: str, problem: str) -> None:
    with pytest.raises(InvalidRule, match=re.escape(problem)) as info:
        compile_pattern(pattern, "--tags")
    assert str(info.value).startswith("--tags: ") and "\n" not in str(info.value)


def test_bad_input_is_refused_and_changes_nothing(stores) -> None:
    _, policy = stores
    kept = policy.add_immutable("team", "**", "v*")
    rule = policy.add_retention("team", "latest", 3)
    for call, flag in [
        (lambda: policy.add_immutable("team", "**", "v{"), "--tags"),
        (lambda: policy.add_immutable("team", "a b", "v*"), "--repos"),
        (lambda: policy.add_immutable("Team!", "**", "v*"), "PROJECT"),
        (lambda: policy.add_retention("team", "latest", 0), "--keep-latest"),
        (lambda: policy.add_retention("team", "latest", "-1"), "--keep-latest"),
        (lambda: policy.add_retention("team", "days", "1.5"), "--keep-days"),
        (lambda: policy.add_retention("team", "days", "ten"), "--keep-days"),
        (lambda: policy.add_retention("team", "latest", 3, tags="v{"), "--tags"),
        (lambda: policy.remove_immutable("team", "x"), "RULE"),
        (lambda: policy.remove_retention("team", 0), "RULE"),
    ]:
        with pytest.raises(InvalidRule) as info:
            call()
        assert str(info.value).startswith(f"{flag}: "), info.value
    with pytest.raises(UnknownRule, match=r"^RULE: no immutability rule 999 in project"):
        policy.remove_immutable("team", 999)
    with pytest.raises(UnknownRule, match="no retention rule"):
        policy.remove_retention("other", rule.id)  # another project's id is unknown
    assert policy.immutable_rules() == [kept]
    assert policy.retention_rules("team") == [rule]
    policy.remove_immutable("team", kept.id)
    assert policy.immutable_rules("team") == []
    again = policy.add_immutable("team", "**", "v*")
    assert again.id != kept.id  # ids are never reused


# Immutable tags in the metadata store.


def test_a_fixed_tag_is_written_but_never_moved(stores) -> None:
    meta, _ = stores
    first, second = record("first"), record("second")
    meta.put_manifest(REPO, first, ("v1", "latest"), fixed=("v1",))
    meta.put_manifest(REPO, first, ("v1",), fixed=("v1",))  # the same digest again
    with pytest.raises(TagMoved) as info:
        meta.put_manifest(REPO, second, ("latest", "v1"), fixed=("v1",))
    assert info.value.tag == "v1" and info.value.digest == first.digest
    assert meta.get_manifest(REPO, second.digest) is None  # nothing was written
    assert meta.tagged(REPO) == {"latest": first.digest, "v1": first.digest}
    meta.put_manifest(REPO, second, ("latest",), fixed=("v1",))
    assert meta.tagged(REPO) == {"latest": second.digest, "v1": first.digest}


def test_racing_writers_of_a_new_fixed_tag_exactly_one_wins(stores) -> None:
    meta, _ = stores
    barrier = threading.Barrier(6)
    outcomes: dict[int, str] = {}

    def push(i: int) -> None:
        barrier.wait()
        try:
            meta.put_manifest(REPO, record(f"racer {i}"), ("v9",), fixed=("v9",))
            outcomes[i] = "won"
        except TagMoved:
            outcomes[i] = "refused"

    threads = [threading.Thread(target=push, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [i for i, outcome in outcomes.items() if outcome == "won"]
    assert len(outcomes) == 6 and len(winners) == 1, outcomes
    assert meta.tagged(REPO) == {"v9": record(f"racer {winners[0]}").digest}
    stored = {r.digest for r in meta.manifests(REPO)}
    assert stored == {record(f"racer {winners[0]}").digest}  # the losers stored nothing


def test_push_and_delete_checks_name_the_rule(stores) -> None:
    meta, policy = stores
    rule = policy.add_immutable("team", "app", "v*")
    first, second = record("first"), record("second")
    assert policy.check_push(meta, REPO, ("v1", "dev"), first.digest) == ("v1",)
    meta.put_manifest(REPO, first, ("v1", "dev"), fixed=("v1",))
    assert policy.check_push(meta, REPO, ("v1",), first.digest) == ("v1",)
    with pytest.raises(TagImmutable) as info:
        policy.check_push(meta, REPO, ("v1",), second.digest)
    message = str(info.value)
    assert "tag 'v1' of 'team/app' is immutable" in message
    assert f"immutability rule {rule.id}" in message and "moved" in message
    with pytest.raises(TagImmutable, match="may not be deleted"):
        policy.check_delete_tag(meta, REPO, "v1")
    with pytest.raises(TagProtected):
        meta.delete_manifest(REPO, first.digest, protected=policy.protector(REPO))
    policy.check_delete_tag(meta, REPO, "dev")
    policy.check_delete_tag(meta, REPO, "v2")  # matches, but does not exist
    assert policy.check_push(meta, "team/other", ("v1",), second.digest) == ()
    assert policy.check_push(meta, "solo", ("v1",), second.digest) == ()


# Retention.


def test_retention_plan_keeps_the_union_and_follows_children_and_referrers(stores) -> None:
    meta, policy = stores
    old = [record(f"old {i}", at=NOW - (10 + i) * DAY) for i in range(3)]
    new = [record(f"new {i}", at=NOW - i * 60) for i in range(2)]
    for i, r in enumerate(old):
        meta.put_manifest(REPO, r, (f"build-{i}",))
    meta.put_manifest(REPO, new[0], ("build-new0",))
    meta.put_manifest(REPO, new[1], ("release-1",))
    # An old index with two children, one of them shared with a kept index.
    shared, own = record("child shared", at=NOW - 20 * DAY), record("child own",
                                                                    at=NOW - 20 * DAY)
    meta.put_manifest(REPO, shared)
    meta.put_manifest(REPO, own)
    doomed_index = record("old index", at=NOW - 20 * DAY, index=True,
                          refs=(shared.digest, own.digest))
    kept_index = record("kept index", at=NOW - 30 * DAY, index=True, refs=(shared.digest,))
    meta.put_manifest(REPO, doomed_index, ("multi-old",))
    meta.put_manifest(REPO, kept_index, ("v1.0",))
    # A signature of an old image goes with it; an untagged stray stays for gc.
    signature = record("signature", at=NOW, subject=old[0].digest)
    meta.put_manifest(REPO, signature)
    stray = record("stray", at=NOW - 50 * DAY)
    meta.put_manifest(REPO, stray)
    meta.put_manifest("team/untouched", record("x", at=NOW - 99 * DAY), ("1",))
    policy.add_retention("team", "latest", 2, repositories="app")
    policy.add_retention("team", "always", repositories="app", tags="release-*")
    policy.add_immutable("team", "**", "v*")  # keeps the old index tagged v1.0

    planned = policy.plan_retention(meta, now=NOW)
    gone = {(r.digest, r.tags) for r in planned.removals}
    assert gone == {
        (old[0].digest, ("build-0",)), (old[1].digest, ("build-1",)),
        (old[2].digest, ("build-2",)), (doomed_index.digest, ("multi-old",)),
        (own.digest, ()), (signature.digest, ()),
    }
    reasons = {r.digest: r.reason for r in planned.removals}
    assert reasons[own.digest] == f"child of {doomed_index.digest}"
    assert reasons[signature.digest] == f"referrer of {old[0].digest}"
    assert planned.repositories == 1 and planned.kept == 3

    result = policy.run_retention(meta, planned)
    assert result.removed == planned.removals and result.skipped == ()
    left = {r.digest for r in meta.manifests(REPO)}
    assert left == {new[0].digest, new[1].digest, shared.digest, kept_index.digest,
                    stray.digest}
    assert policy.plan_retention(meta, now=NOW).removals == ()
    assert len(list(meta.manifests("team/untouched"))) == 1


def test_retention_days_and_a_changed_manifest_is_skipped(stores) -> None:
    meta, policy = stores
    fresh, stale = record("fresh", at=NOW - 2 * DAY), record("stale", at=NOW - 9 * DAY)
    meta.put_manifest(REPO, fresh, ("a",))
    meta.put_manifest(REPO, stale, ("b",))
    policy.add_retention("team", "days", 7)
    planned = policy.plan_retention(meta, "team", now=NOW)
    assert [r.digest for r in planned.removals] == [stale.digest]
    meta.put_manifest(REPO, stale, ("c",))  # re-tagged after the plan was made
    result = policy.run_retention(meta, planned)
    assert result.removed == () and [r.digest for r in result.skipped] == [stale.digest]
    assert meta.get_manifest(REPO, stale.digest) is not None


def test_deleting_a_manifest_an_immutable_tag_points_at_is_refused(stores) -> None:
    meta, policy = stores
    policy.add_immutable("team", "**", "v*")
    image = record("image")
    meta.put_manifest(REPO, image, ("dev",))
    guard = policy.protector(REPO)
    assert guard is not None and policy.protector("other/app") is None
    meta.put_manifest(REPO, image, ("v1",), fixed=("v1",))
    with pytest.raises(TagProtected) as info:
        meta.delete_manifest(REPO, image.digest, protected=guard)
    assert info.value.tag == "v1"
    assert meta.tagged(REPO) == {"dev": image.digest, "v1": image.digest}
    assert policy.check_delete_tag(meta, REPO, "v2") is False  # protected, absent: keep out
    assert policy.check_delete_tag(meta, REPO, "dev") is True


def test_a_delete_racing_a_push_of_an_immutable_tag_never_loses_the_tag(stores) -> None:
    meta, policy = stores
    policy.add_immutable("team", "**", "v*")
    guard = policy.protector(REPO)
    for round_ in range(8):
        image = record(f"race {round_}")
        meta.put_manifest(REPO, image, ("dev",))
        barrier = threading.Barrier(2)
        outcome: dict[str, object] = {}

        def push(image: ManifestRecord = image, barrier: threading.Barrier = barrier,
                 outcome: dict[str, object] = outcome, tag: str = f"v{round_}") -> None:
            barrier.wait()
            meta.put_manifest(REPO, image, (tag,), fixed=(tag,))
            outcome["pushed"] = True

        def delete(image: ManifestRecord = image, barrier: threading.Barrier = barrier,
                   outcome: dict[str, object] = outcome) -> None:
            barrier.wait()
            try:
                outcome["deleted"] = meta.delete_manifest(REPO, image.digest, protected=guard)
            except TagProtected:
                outcome["deleted"] = "refused"

        threads = [threading.Thread(target=push), threading.Thread(target=delete)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcome.get("pushed") is True, outcome
        # Whatever the order, the immutable tag the push made is there.
        assert meta.tagged(REPO).get(f"v{round_}") == image.digest, outcome
