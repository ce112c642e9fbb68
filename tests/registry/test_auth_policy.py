"""The access policy: the default one (no rules, no admins) against a real ``registry serve
--tls`` with no config file, refusals that say why, the start-up log line, and
``registry policy show``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from registry.auth.access import Scope
from registry.auth.explain import denial, render, summary
from registry.auth.rules import AccessPolicy, parse_rules
from registry.testing.processes import ours
from tests.registry.server import Api, error_codes
from tests.registry.test_auth_server import (
    CONFIG,
    PASSWORDS,
    SERVICE,
    AuthServer,
    push_image,
    start_auth_server,
)

CI_PASSWORD = "ci-password"


def registry_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``registry ARGS`` as a program."""
    return subprocess.run([sys.executable, "-m", "registry.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_default_policy_lets_users_pull_and_push_and_anonymous_nothing() -> None:
    policy = AccessPolicy(groups=[("team", ("ci",))])
    assert not policy.explicit
    ci, anonymous = policy.principal("ci"), policy.principal(None)
    assert policy.allowed(ci, "repository", "team/app") == {"pull", "push"}
    assert policy.allowed(ci, "repository", "a/b/c/d") == {"pull", "push"}
    assert policy.allowed(anonymous, "repository", "team/app") == set()
    assert policy.grant(ci, "repository", "x", ["*"]) == ("pull", "push")
    assert "default policy" in summary(policy)
    reason = denial(policy, ci, [Scope.repository("team/app", "pull", "delete")])
    assert reason is not None and reason.action == "delete"
    assert "delete on team/app" in reason.reason and "default policy" in reason.reason
    assert reason.record() == {"Type": "repository", "Name": "team/app", "Action": "delete",
                               "Reason": reason.reason}
    anon = denial(policy, anonymous, [Scope.repository("team/app", "pull")])
    assert anon is not None and "anonymous" in anon.reason and "log in" in anon.reason
    assert denial(policy, ci, [Scope.repository("team/app", "push")]) is None


def test_any_rule_or_admin_makes_the_policy_explicit() -> None:
    admins_only = AccessPolicy(admins=["root"])
    assert admins_only.explicit
    assert admins_only.allowed(admins_only.principal("ci"), "repository", "team/app") == set()
    assert admins_only.allowed(admins_only.principal("root"), "repository", "t/a") == {
        "pull", "push", "delete"}
    rules = AccessPolicy(parse_rules([{"repository": "team/*", "users": ["bob"],
                                       "actions": ["pull"]}]))
    bob = rules.principal("bob", ["devs"])
    assert rules.allowed(bob, "repository", "team/app") == {"pull"}
    found = denial(rules, bob, [Scope.repository("team/app", "pull", "push")])
    assert found is not None
    assert found.reason == "no rule grants push on team/app to user bob (groups: devs)"
    assert "explicit policy (1 access rule)" in summary(rules)
    shown = "\n".join(render(rules, bob))
    assert "team/*" in shown and "pull" in shown and "anything else: nothing" in shown


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """``registry serve --tls`` with no config file and user ``ci`` added by the command."""
    tmp = tmp_path_factory.mktemp("default-policy")
    root = tmp / "root"
    added = registry_cli("user", "add", "ci", "--password-stdin", "--root", str(root),
                         stdin=f"{CI_PASSWORD}\n")
    assert added.returncode == 0, added.stderr
    proc = ours(root, tls=True).start()
    yield AuthServer(proc, root)
    proc.stop()


def test_the_start_up_log_states_the_policy(fresh: AuthServer) -> None:
    log = fresh.proc.log()
    assert ("access: default policy (no access rules or admins configured): every "
            "logged-in user may pull and push every repository; anonymous clients may do "
            "nothing") in log


def test_an_added_user_may_push_and_pull_anywhere(fresh: AuthServer) -> None:
    token = fresh.token("ci", "repository:team/app:pull,push", password=CI_PASSWORD)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": "team/app",
                                 "actions": ["pull", "push"]}]
    with fresh.as_token(token) as c:
        Api(c).image("team/app", "1")
        assert c.get("/v2/team/app/manifests/1").status_code == 200
    with fresh.as_token(fresh.token("ci", "registry:catalog:*", password=CI_PASSWORD)) as c:
        assert "team/app" in c.get("/v2/_catalog").json()["repositories"]


def test_anonymous_clients_may_do_nothing_and_are_told_why(fresh: AuthServer) -> None:
    token = fresh.token(None, "repository:team/app:pull,push")
    assert jwt.decode(token, options={"verify_signature": False})["access"] == []
    with fresh.as_token(token) as c:
        for r in (c.get("/v2/team/app/manifests/1"), c.post("/v2/team/app/blobs/uploads/")):
            assert r.status_code == 401 and error_codes(r) == ["DENIED"]
            error = r.json()["errors"][0]
            assert "on team/app to anonymous clients" in error["message"]
            assert "log in" in error["message"]
            assert error["detail"][0]["Name"] == "team/app"
            assert error["detail"][0]["Reason"] in error["message"]
    with fresh.as_token(fresh.token(None, "registry:catalog:*")) as c:
        assert c.get("/v2/_catalog").json()["repositories"] == []


def test_delete_is_not_part_of_the_default_policy(fresh: AuthServer) -> None:
    token = fresh.token("ci", "repository:team/app:pull,push,delete", password=CI_PASSWORD)
    with fresh.as_token(token) as c:
        r = c.delete("/v2/team/app/manifests/1")
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    error = r.json()["errors"][0]
    assert error["message"].startswith("access denied: no rule grants delete on team/app to "
                                       "user ci")
    assert error["detail"] == [{"Type": "repository", "Name": "team/app", "Action": "delete",
                                "Reason": error["message"].removeprefix("access denied: ")}]


@pytest.fixture(scope="module")
def ruled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """A registry with the rules of the server tests."""
    srv = start_auth_server(tmp_path_factory.mktemp("ruled"))
    yield srv
    srv.stop()


def test_a_rule_file_keeps_restricting_and_denials_name_the_rule_gap(ruled: AuthServer
                                                                     ) -> None:
    assert "access: explicit policy (5 access rules; admins root; 1 group)" in ruled.proc.log()
    push_image(ruled, "team-b/x")
    token = ruled.token("alice", "repository:team-b/x:pull,push")
    assert jwt.decode(token, options={"verify_signature": False})["access"] == []
    with ruled.as_token(token) as c:
        r = c.post("/v2/team-b/x/blobs/uploads/")
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    assert r.json()["errors"][0]["message"] == (
        "access denied: no rule grants pull on team-b/x to user alice (groups: team-a)")
    with ruled.as_token(ruled.token("alice", "repository:team-a/y:pull")) as c:
        r = c.post("/v2/team-a/y/blobs/uploads/")
    assert r.status_code == 401 and error_codes(r) == ["DENIED"]
    assert "the token does not grant repository:team-a/y:pull,push" in r.json()["errors"][0][
        "message"]
    with ruled.client() as c:
        r = c.get("/token", params={"service": SERVICE,
                                    "scope": "repository:team-b/x:pull,push"},
                  auth=("carol", PASSWORDS["carol"]))
    assert r.json()["scope"] == "repository:team-b/x:pull,push"


def test_policy_show(tmp_path: Path) -> None:
    root = tmp_path / "root"
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    assert registry_cli("user", "add", "dave", "--group", "team-a", "--password-stdin",
                        "--root", str(root), stdin="pw\n").returncode == 0
    default = registry_cli("policy", "show", "--root", str(root))
    assert default.returncode == 0, default.stderr
    assert "default policy" in default.stdout
    assert "**  pull,push  every logged-in user" in default.stdout
    shown = registry_cli("policy", "show", "--root", str(root), "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "admins (every action on every repository): root" in lines
    assert "group team-a: alice" in lines
    assert any(line.split() == ["team-b/*", "pull,push", "user", "carol"] for line in lines)
    dave = registry_cli("policy", "show", "--root", str(root), "--config", str(config),
                        "--user", "dave").stdout.splitlines()
    assert "user dave (groups: team-a)" in dave
    assert [line.split()[:2] for line in dave if line.startswith("  ") and "/" in line] == [
        ["team-a/*", "pull,push,delete"], ["public/**", "pull"]]
    anonymous = registry_cli("policy", "show", "--root", str(root), "--config", str(config),
                             "--anonymous").stdout.splitlines()
    assert [line.split()[:2] for line in anonymous if "/" in line and line.startswith("  ")
            ] == [["public/**", "pull"]]
    stranger = registry_cli("policy", "show", "--root", str(root), "--user", "zed")
    assert stranger.returncode == 0 and "no user 'zed'" in stranger.stderr
    assert "user zed" in stranger.stdout


def test_an_open_registry_says_so_when_it_starts(tmp_path: Path) -> None:
    with ours(tmp_path / "root", env={"REGISTRY_DELETE_ENABLED": "false"}) as proc:
        log = proc.log()
    assert ("access: open (auth none): every client may pull and push every repository; the "
            "access rules are not used") in log
