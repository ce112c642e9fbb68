"""Robot accounts and users' CLI secrets against ``registry serve --tls`` over HTTP, on
SQLite and on PostgreSQL: the token endpoint (GET with basic credentials, POST password and
refresh grants) grants a robot only its actions on its project whatever the rules and the
projects say (a public project gives it nothing);
disabled, expired, rotated and deleted robots and revoked CLI secrets are refused at the
next token request, refresh tokens too; ``--auth basic`` does the same per request; the
commands refuse bad input with one line naming the argument and change nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest

from registry.config import Settings
from registry.robots.service import open_robot_store
from registry.robots.store import RobotStore
from registry.testing.deadline import time_limit
from registry.testing.processes import ours
from tests.registry.server import REPO_ROOT, Api, error_codes
from tests.registry.test_auth_server import SERVICE, AuthServer

TIMEOUT = 300
USER, USER_PASSWORD = "carol", "carol-password-1"
# Every user may do everything everywhere: a robot still gets only its own actions.
CONFIG = """
admins = ["root"]

[[access]]
repository = "**"
users = ["*"]
actions = ["pull", "push", "delete"]
"""


@pytest.fixture(autouse=True)
def deadline() -> Iterator[None]:
    """Fail a case that runs longer than TIMEOUT seconds instead of hanging the session."""
    with time_limit(TIMEOUT):
        yield


@dataclass
class Robots:
    """A running server, the environment of its commands, and its robot store."""

    server: AuthServer
    env: dict[str, str]
    settings: Settings

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """``registry ARGS --root ROOT`` as a program with the server's environment."""
        return subprocess.run(
            [sys.executable, "-m", "registry.cli", *args, "--root", str(self.server.root)],
            input=stdin, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
            env={**os.environ, **self.env})

    def create(self, name: str, project: str, actions: str, *extra: str) -> dict[str, str]:
        """``registry robot create … --json``: the printed record."""
        made = self.cli("robot", "create", name, "--project", project, "--actions", actions,
                        "--json", *extra)
        assert made.returncode == 0, made.stderr
        return dict(json.loads(made.stdout))

    def store(self) -> RobotStore:
        """The server's robot store, opened as the server opens it."""
        return open_robot_store(self.settings)


def _start(tmp: Path, env: dict[str, str], auth: str = "token") -> Robots:
    root = tmp / "root"
    config = tmp / "config.toml"
    config.write_text(CONFIG)
    settings = Settings(root=root, metadata_url=env.get("REGISTRY_METADATA_URL", ""))
    proc = ours(root, tls=True, env=env,
                extra=["--config", str(config), "--auth", auth]).start()
    robots = Robots(AuthServer(proc, root), env, settings)
    added = robots.cli("user", "add", USER, "--password-stdin", stdin=f"{USER_PASSWORD}\n")
    assert added.returncode == 0, added.stderr
    for project, public in (("team", False), ("other", False), ("open", True)):
        made = robots.cli("project", "create", project, *(["--public"] if public else []))
        assert made.returncode == 0, made.stderr
    return robots


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def robots(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Robots]:
    """A TLS registry with token auth and :data:`CONFIG`, on SQLite or PostgreSQL."""
    env: dict[str, str] = {}
    if request.param == "postgres":
        engine = request.getfixturevalue("postgres")
        env["REGISTRY_METADATA_URL"] = engine.create_database("robots_server")
    srv = _start(tmp_path_factory.mktemp(f"robots-{request.param}"), env)
    yield srv
    srv.server.stop()


def _get_token(robots: Robots, user: str, password: str, *scopes: str) -> httpx.Response:
    with robots.server.client() as c:
        return c.get("/token", params={"service": SERVICE, "scope": list(scopes)},
                     auth=(user, password))


def _post_token(robots: Robots, form: dict[str, str]) -> httpx.Response:
    with robots.server.client() as c:
        return c.post("/token", data={"service": SERVICE, "client_id": "test", **form})


def _access(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["token"], options={"verify_signature": False})
    return {f"{a['type']}:{a['name']}": a["actions"] for a in claims["access"]}


def _message(response: httpx.Response) -> str:
    assert error_codes(response) == ["UNAUTHORIZED"], response.text
    return str(response.json()["errors"][0]["message"])


def test_a_robot_token_carries_only_its_actions_on_its_project(robots: Robots) -> None:
    made = robots.create("ci", "team", "pull,push")
    assert made["name"] == "robot$team+ci" and len(made["secret"]) >= 43
    granted = _access(_get_token(robots, made["name"], made["secret"],
                                 "repository:team/app:pull,push,delete",
                                 "repository:team/deep/app:pull",
                                 "repository:other/app:pull,push",
                                 "repository:team:pull", "repository:teamx/app:pull",
                                 "repository:open/app:pull", "registry:catalog:*"))
    assert granted == {"repository:team/app": ["pull", "push"],
                       "repository:team/deep/app": ["pull"],
                       "registry:catalog": ["*"]}
    # A user under the same rules gets everything asked for.
    user = _access(_get_token(robots, USER, USER_PASSWORD, "repository:other/app:pull,push"))
    assert user == {"repository:other/app": ["pull", "push"]}
    token = _get_token(robots, made["name"], made["secret"],
                       "repository:team/app:pull,push").json()["token"]
    with robots.server.as_token(token) as c:
        Api(c).image("team/app", "1")
    other = _get_token(robots, made["name"], made["secret"],
                       "repository:other/app:pull,push").json()["token"]
    with robots.server.as_token(other) as c:
        r = c.post("/v2/other/app/blobs/uploads/")
        assert r.status_code == 403 and error_codes(r) == ["DENIED"]
        message = r.json()["errors"][0]["message"]
        assert "robot account robot$team+ci" in message and "project team" in message, message


def test_post_password_and_refresh_grants_and_rotation(robots: Robots) -> None:
    made = robots.create("builder", "team", "pull")
    first = _post_token(robots, {"grant_type": "password", "username": made["name"],
                                 "password": made["secret"], "access_type": "offline",
                                 "scope": "repository:team/app:pull,push"})
    assert _access(first) == {"repository:team/app": ["pull"]}
    refresh = first.json()["refresh_token"]
    again = _post_token(robots, {"grant_type": "refresh_token", "refresh_token": refresh,
                                 "scope": "repository:team/app:pull"})
    assert _access(again) == {"repository:team/app": ["pull"]}
    rotated = robots.cli("robot", "rotate", made["name"], "--json")
    assert rotated.returncode == 0, rotated.stderr
    new = json.loads(rotated.stdout)["secret"]
    assert new != made["secret"]
    old = _get_token(robots, made["name"], made["secret"], "repository:team/app:pull")
    assert old.status_code == 401 and "incorrect" in _message(old)
    stale = _post_token(robots, {"grant_type": "refresh_token", "refresh_token": refresh})
    assert stale.status_code == 401 and "rotated" in _message(stale)
    assert _access(_get_token(robots, made["name"], new, "repository:team/app:pull")) == {
        "repository:team/app": ["pull"]}


def test_disabled_and_expired_robots_are_refused_at_the_next_token_request(
        robots: Robots) -> None:
    made = robots.create("nightly", "team", "pull,push", "--expires", "30")
    name, secret = made["name"], made["secret"]
    refresh = _post_token(robots, {"grant_type": "password", "username": name,
                                   "password": secret, "access_type": "offline"}
                          ).json()["refresh_token"]
    assert robots.cli("robot", "disable", name).returncode == 0
    refused = _get_token(robots, name, secret, "repository:team/app:pull")
    assert refused.status_code == 401
    assert _message(refused) == f"robot account {name} is disabled (registry robot enable)"
    stale = _post_token(robots, {"grant_type": "refresh_token", "refresh_token": refresh})
    assert stale.status_code == 401 and "disabled" in _message(stale)
    listed = robots.cli("robot", "list", "--project", "team")
    assert f"{name}\tpull,push\tdisabled" in listed.stdout
    assert robots.cli("robot", "enable", name).returncode == 0
    assert _get_token(robots, name, secret, "repository:team/app:pull").status_code == 200

    store = robots.store()
    try:
        store.update("team", "nightly", expires_at=time.time() - 1)
    finally:
        store.close()
    expired = _get_token(robots, name, secret, "repository:team/app:pull")
    assert expired.status_code == 401
    assert _message(expired).startswith(f"robot account {name} expired at ")
    assert "expired" in robots.cli("robot", "list").stdout
    assert robots.cli("robot", "delete", name).returncode == 0
    gone = _get_token(robots, name, secret, "repository:team/app:pull")
    assert gone.status_code == 401 and "incorrect" in _message(gone)


def test_a_robot_of_a_deleted_project_is_refused(robots: Robots) -> None:
    assert robots.cli("project", "create", "gone").returncode == 0
    made = robots.create("ci", "gone", "pull")
    assert _get_token(robots, made["name"], made["secret"]).status_code == 200
    deleted = robots.cli("project", "delete", "gone")
    assert deleted.returncode == 0, deleted.stderr
    deadline = time.monotonic() + 10  # the servers re-read the projects within a second
    while (refused := _get_token(robots, made["name"], made["secret"])).status_code == 200:
        if time.monotonic() >= deadline:
            pytest.fail("the robot still logs in")
        time.sleep(0.2)
    assert _message(refused) == f"robot account {made['name']}: project gone no longer exists"
    assert robots.cli("project", "create", "gone").returncode == 0
    time.sleep(1.5)
    again = _get_token(robots, made["name"], made["secret"], "repository:gone/app:pull")
    assert again.status_code == 401 or _access(again) == {}, again.text


def test_a_users_cli_secret_logs_in_and_is_revoked(robots: Robots) -> None:
    made = robots.cli("user", "secret", "create", USER, "--name", "laptop", "--json")
    assert made.returncode == 0, made.stderr
    secret = json.loads(made.stdout)["secret"]
    assert _access(_get_token(robots, USER, secret, "repository:x/app:pull")) == {
        "repository:x/app": ["pull"]}
    refresh = _post_token(robots, {"grant_type": "password", "username": USER,
                                   "password": secret, "access_type": "offline"}
                          ).json()["refresh_token"]
    assert _post_token(robots, {"grant_type": "refresh_token",
                                "refresh_token": refresh}).status_code == 200
    listed = robots.cli("user", "secret", "list", USER)
    assert listed.stdout.startswith(f"{USER}\tlaptop\t") and secret not in listed.stdout
    # Another user cannot use it.
    assert _get_token(robots, "root", secret, "repository:x/app:pull").status_code == 401
    revoked = robots.cli("user", "secret", "revoke", USER, "--name", "laptop")
    assert revoked.returncode == 0, revoked.stderr
    assert _get_token(robots, USER, secret, "repository:x/app:pull").status_code == 401
    stale = _post_token(robots, {"grant_type": "refresh_token", "refresh_token": refresh})
    assert stale.status_code == 401 and "revoked" in _message(stale)
    # The password still works.
    assert _get_token(robots, USER, USER_PASSWORD, "repository:x/app:pull").status_code == 200


@pytest.mark.parametrize(("args", "stdin", "error"), [
    (["robot", "create", "dup", "--project", "team", "--actions", "pull"], "",
     "registry robot: NAME: robot 'robot$team+dup' exists already"),
    (["robot", "create", "x", "--project", "team", "--actions", "pull,,push"], "",
     "registry robot: --actions 'pull,,push' is malformed: give a comma-separated list of "
     "pull, push, delete"),
    (["robot", "create", "x", "--project", "team", "--actions", "pull,write"], "",
     "registry robot: --actions: unknown action 'write' (known: pull, push, delete)"),
    (["robot", "create", "x", "--project", "team", "--actions", "pull", "--expires", "-3"], "",
     "registry robot: --expires '-3' is not a positive whole number of days (1-36500)"),
    (["robot", "create", "x", "--project", "team", "--actions", "pull", "--expires", "1.5"],
     "", "registry robot: --expires '1.5' is not a positive whole number of days (1-36500)"),
    (["robot", "create", "x", "--project", "team", "--actions", "pull", "--secret-stdin"],
     "\n", "registry robot: --secret-stdin: the secret on standard input is empty"),
    (["robot", "create", "x", "--project", "Team!", "--actions", "pull"], "",
     "registry robot: --project 'Team!' is not a valid project name: use lowercase letters "
     "and digits, separated by '.', '_' or '-'"),
    (["robot", "rotate", "robot$team+dup", "--secret-stdin"], "\n",
     "registry robot: --secret-stdin: the secret on standard input is empty"),
    (["robot", "create", "x", "--project", "nope", "--actions", "pull"], "",
     "registry robot: --project: no project 'nope' (registry project create nope)"),
    (["user", "secret", "create", "nobody"], "",
     "registry user secret: USER: no user 'nobody' (registry user add)"),
])
def test_bad_input_is_one_line_naming_the_argument_and_changes_nothing(
        robots: Robots, args: list[str], stdin: str, error: str) -> None:
    if not any(r.name == "dup" for r in _listed(robots)):
        robots.create("dup", "team", "push")
    before = robots.cli("robot", "list", "--json").stdout
    secrets_before = robots.cli("user", "secret", "list", "--json").stdout
    result = robots.cli(*args, stdin=stdin)
    assert result.returncode == 2, result
    assert result.stderr.strip() == error
    assert robots.cli("robot", "list", "--json").stdout == before
    assert robots.cli("user", "secret", "list", "--json").stdout == secrets_before


def _listed(robots: Robots) -> list[object]:
    store = robots.store()
    try:
        return list(store.robots())
    finally:
        store.close()


def test_basic_auth_refuses_a_robot_outside_its_project_and_once_disabled(
        tmp_path: Path) -> None:
    robots = _start(tmp_path, {}, auth="basic")
    try:
        made = robots.create("push", "team", "pull,push")
        auth = (made["name"], made["secret"])
        with robots.server.client(auth=auth) as c:
            Api(c).image("team/app", "1")
            r = c.post("/v2/other/app/blobs/uploads/")
            assert r.status_code == 403 and error_codes(r) == ["DENIED"]
            assert "robot account robot$team+push" in r.json()["errors"][0]["message"]
            assert c.get("/v2/team/app/tags/list").status_code == 200
            assert robots.cli("robot", "disable", made["name"]).returncode == 0
            r = c.get("/v2/team/app/tags/list")
            assert r.status_code == 401
            assert "is disabled" in r.json()["errors"][0]["message"]
    finally:
        robots.server.stop()
