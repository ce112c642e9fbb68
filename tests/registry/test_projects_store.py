"""The project store on SQLite and PostgreSQL, the role cache, sizes and roles, and the
``registry project`` commands' one-line errors that change nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.auth.rules import AccessPolicy
from registry.auth.shared_state import shared_store
from registry.config import Settings
from registry.projects.model import (
    Member,
    Project,
    ProjectExists,
    ProjectInvalid,
    ProjectNotFound,
    format_size,
    parse_size,
)
from registry.projects.policy import ProjectPolicy, ProjectRoles
from registry.projects.postgres import PostgresProjectStore
from registry.projects.service import ProjectService
from registry.projects.store import FILE_NAME, ProjectStore, SqliteProjectStore
from registry.testing.engines import PostgresEngine
from tests.registry.projects_env import registry_cmd


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProjectStore]:
    """An empty project store of each kind."""
    if request.param == "sqlite":
        found: ProjectStore = SqliteProjectStore(tmp_path)
    else:
        engine: PostgresEngine = request.getfixturevalue("postgres")
        url = engine.create_database(f"projects_store_{tmp_path.name[-8:].lower()}"
                                     .replace("-", "_"))
        found = PostgresProjectStore(shared_store(Settings(metadata_url=url), migrate=True))
    yield found
    found.close()


def test_the_store_keeps_projects_and_members(store: ProjectStore) -> None:
    assert store.generation() == 0 and store.projects() == []
    store.create(Project("team", public=False, quota=1024))
    store.create(Project("pub", public=True))
    with pytest.raises(ProjectExists, match="project 'team' exists already"):
        store.create(Project("team"))
    assert [p.name for p in store.projects()] == ["pub", "team"]
    team = store.get("team")
    assert team is not None and team.quota == 1024 and not team.public
    assert store.set_member(Member("team", "alice", "developer")) is True
    assert store.set_member(Member("team", "alice", "maintainer")) is False
    assert store.set_member(Member("team", "@ci", "guest")) is True
    with pytest.raises(ProjectNotFound):
        store.set_member(Member("nope", "alice", "guest"))
    assert store.members("team") == [Member("team", "@ci", "guest"),
                                     Member("team", "alice", "maintainer")]
    store.update(Project("team", public=True, quota=None))
    team = store.get("team")
    assert team is not None and team.public and team.quota is None
    with pytest.raises(ProjectNotFound):
        store.update(Project("nope"))
    generation = store.generation()
    assert store.remove_member("team", "@ci") and not store.remove_member("team", "@ci")
    assert store.generation() > generation
    assert store.delete("team") and not store.delete("team")
    assert store.members() == []


def test_roles_are_cached_and_refreshed_after_a_write(store: ProjectStore) -> None:
    roles = ProjectRoles(store, refresh_seconds=3600)
    policy = ProjectPolicy(AccessPolicy(), roles)
    alice = policy.principal("alice")
    assert policy.allowed(alice, "repository", "team/app") == {"pull", "push"}
    service = ProjectService(store, roles=roles)
    service.create("team")
    # The default policy does not reach into a project.
    assert policy.allowed(alice, "repository", "team/app") == set()
    assert policy.allowed(alice, "repository", "other/app") == {"pull", "push"}
    service.add_member("team", "alice", "guest")
    assert policy.allowed(alice, "repository", "team/app") == {"pull"}
    ci = policy.principal("bob", ["ci"])
    service.add_member("team", "@ci", "maintainer")
    assert policy.allowed(ci, "repository", "team/a/b") == {"pull", "push", "delete"}
    # Another process's write shows after the refresh interval.
    store.set_member(Member("team", "alice", "developer"))
    assert policy.allowed(alice, "repository", "team/app") == {"pull"}
    roles.refresh_seconds = 0
    assert policy.allowed(alice, "repository", "team/app") == {"pull", "push"}


def test_sizes_and_roles() -> None:
    assert parse_size("10GiB") == 10 << 30
    assert parse_size("500MB") == 500_000_000
    assert parse_size("2G") == 2 << 30
    assert parse_size("1.5k") == 1536
    assert parse_size("4096") == 4096
    assert parse_size("none") is None and parse_size(None) is None
    assert format_size(3000) == "2.9 KiB" and format_size(None) == "unlimited"
    for bad in ("", "12XB", "-5", "ten", "1e9"):
        with pytest.raises(ProjectInvalid, match="--quota"):
            parse_size(bad)


def test_a_root_without_projects_gets_no_database_file(tmp_path: Path) -> None:
    store = SqliteProjectStore(tmp_path)
    assert store.projects() == [] and store.generation() == 0
    assert not (tmp_path / FILE_NAME).exists()


def test_the_commands_refuse_bad_input_and_change_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ok = registry_cmd(root, "project", "create", "team", "--quota", "1MiB")
    assert ok.returncode == 0, ok.stderr
    assert registry_cmd(root, "user", "add", "alice", "--password-stdin",
                        stdin="pw\n").returncode == 0
    assert registry_cmd(root, "project", "member", "add", "team", "alice", "--role",
                        "guest").returncode == 0
    db = root / FILE_NAME

    def dump() -> list[tuple[object, ...]]:
        with sqlite3.connect(db) as conn:
            return [*conn.execute("SELECT * FROM projects ORDER BY name"),
                    *conn.execute("SELECT * FROM project_members ORDER BY name")]

    before = dump()
    cases = [
        (("project", "create", "team"), "project 'team' exists already"),
        (("project", "create", "Team"), "project 'Team' is not a valid project name"),
        (("project", "create", "new", "--quota", "12XB"), "--quota '12XB' is not a size"),
        (("project", "update", "nope", "--public"), "project 'nope' does not exist"),
        (("project", "update", "team", "--quota", "-3"), "--quota '-3' is not a size"),
        (("project", "update", "team"), "give --public, --private or --quota"),
        (("project", "show", "nope"), "project 'nope' does not exist"),
        (("project", "delete", "nope"), "project 'nope' does not exist"),
        (("project", "member", "add", "nope", "alice", "--role", "guest"),
         "project 'nope' does not exist"),
        (("project", "member", "add", "team", "alice", "--role", "owner"),
         "--role 'owner' is not a role: use one of guest, developer, maintainer, admin"),
        (("project", "member", "add", "team", "ghost", "--role", "guest"),
         "user 'ghost' does not exist"),
        (("project", "member", "add", "team", "bad name", "--role", "guest"),
         "member 'bad name' is not a user name or @group"),
        (("project", "member", "remove", "team", "bob"),
         "'bob' is not a member of project 'team'"),
    ]
    for args, text in cases:
        done = registry_cmd(root, *args)
        assert done.returncode != 0, args
        err = done.stderr.strip()
        assert err.startswith("registry project: ") and text in err, (args, err)
        assert "\n" not in err and "Traceback" not in err
    assert dump() == before


def test_policy_show_names_the_projects(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for args in (("project", "create", "team"), ("project", "create", "pub", "--public"),
                 ("project", "member", "add", "team", "@ci", "--role", "guest")):
        assert registry_cmd(root, *args).returncode == 0
    everything = registry_cmd(root, "policy", "show").stdout
    assert "2 projects: their members' roles replace the default policy there" in everything
    assert "  team  private  @ci guest" in everything
    assert "  pub  public  (no members)" in everything
    anonymous = registry_cmd(root, "policy", "show", "--anonymous").stdout
    assert "  pub/**  pull  public project" in anonymous and "team/**" not in anonymous


def test_quota_refusals_reach_the_listeners(tmp_path: Path) -> None:
    import asyncio

    from layerstore.digest import Digest
    from registry.errors import DENIED, SIZE_INVALID, RegistryError
    from registry.metadata.sqlite import SqliteMetadataStore
    from registry.projects.quota import QuotaExceeded, QuotaGuard

    store = SqliteProjectStore(tmp_path)
    store.create(Project("team", quota=1000))
    metadata = SqliteMetadataStore(tmp_path / "metadata.db")
    held = Digest.from_bytes(b"held")
    metadata.link_blob("team/a", held, 600)
    guard = QuotaGuard(ProjectRoles(store), metadata)
    seen: list[QuotaExceeded] = []
    guard.listeners.append(seen.append)

    async def scenario() -> list[RegistryError]:
        refused = []
        await guard.check_adding("team/b", held, 600)  # held already: counts once
        await guard.check_adding("other/b", None, 10**9)  # no project
        await guard.check_announced("team/b", 400)
        for call in (guard.check_announced("team/b", 401),
                     guard.check_adding("team/b", Digest.from_bytes(b"new"), 500)):
            with pytest.raises(RegistryError) as caught:
                await call
            refused.append(caught.value)
        return refused

    announced, adding = asyncio.run(scenario())
    assert announced.code is SIZE_INVALID and announced.status == 413
    assert adding.code is DENIED and adding.status == 403
    assert [(e.project, e.repository, e.quota, e.usage, e.adding) for e in seen] == [
        ("team", "team/b", 1000, 600, 401), ("team", "team/b", 1000, 600, 500)]
    assert seen[1].digest == str(Digest.from_bytes(b"new"))
    metadata.close()
    store.close()
