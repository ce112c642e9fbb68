"""A root with users, access rules and images made by the release before projects
(``data/auth-legacy-root.tar.gz``, see :mod:`tests.registry.auth_legacy_root`) works
unchanged: every user's token grants what that release granted, its images read back with
the same digests, no project database appears; and a project created afterwards adds to
the rules (union) without taking anything away."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from registry.testing.processes import ours
from tests.registry.auth_legacy_root import PASSWORDS, client, grants, token, unpack
from tests.registry.server import OCI_MANIFEST, REPO_ROOT

TARBALL = Path(__file__).parent / "data" / "auth-legacy-root.tar.gz"


@pytest.fixture
def legacy(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """The packed root, unpacked: its directory (root, config.toml) and legacy.json."""
    return unpack(TARBALL, tmp_path)


def registry_cmd(base: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``registry ARGS`` on the unpacked root and its config."""
    return subprocess.run([sys.executable, "-m", "registry.cli", *args, "--root",
                           str(base / "root"), "--config", str(base / "config.toml")],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)


def test_a_root_of_the_release_before_projects_works_unchanged(
        legacy: tuple[Path, dict[str, Any]]) -> None:
    base, described = legacy
    root = base / "root"
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    kept = {f for f in described["files"]
            if not f.endswith(("-wal", "-shm")) and not f.startswith("run/")}
    assert kept <= files and "auth/users.json" in kept and "metadata.db" in kept
    server = ours(root, tls=True, extra=["--config", str(base / "config.toml")]).start()
    try:
        assert grants(server.url, root) == described["grants"]
        for repo, digest in described["digests"].items():
            user = "root"
            scope = f"repository:{repo}:pull"
            with client(server.url, root, token(server.url, root, user, scope)["token"]) as c:
                r = c.get(f"/v2/{repo}/manifests/1", headers={"Accept": OCI_MANIFEST})
                assert r.status_code == 200 and r.headers["docker-content-digest"] == digest
        with client(server.url, root) as c:
            me = c.get("/api/v1/me", auth=("alice", PASSWORDS["alice"]))
            assert me.status_code == 200 and me.json()["groups"] == ["team-a"]
    finally:
        server.stop()
    assert not (root / "projects.db").exists()
    shown = registry_cmd(base, "policy", "show", "--user", "reader")
    assert shown.returncode == 0 and "team-a/*" in shown.stdout, shown.stderr


def test_a_project_on_an_old_root_adds_to_the_rules(
        legacy: tuple[Path, dict[str, Any]]) -> None:
    base, described = legacy
    root = base / "root"
    for args in (("project", "create", "team-a"),
                 ("project", "member", "add", "team-a", "reader", "--role", "developer"),
                 ("project", "member", "add", "team-a", "carol", "--role", "guest")):
        done = registry_cmd(base, *args)
        assert done.returncode == 0, done.stderr
    server = ours(root, tls=True, extra=["--config", str(base / "config.toml")]).start()
    try:
        now = grants(server.url, root)
    finally:
        server.stop()
    changed = {key: (described["grants"][key], now[key]) for key in now
               if now[key] != described["grants"][key]}
    assert changed == {
        "reader team-a/app": (["pull"], ["pull", "push"]),
        "carol team-a/app": ([], ["pull"]),
    }
