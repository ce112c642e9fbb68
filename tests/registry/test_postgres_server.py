"""``registry migrate`` and ``registry serve`` with ``metadata_url`` on a real PostgreSQL:
the schema is made at start, an unreachable database stops the start with one line, a
database lost at run time answers 503 with the spec's error JSON, and two server processes
on different roots share tags and manifests through it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from registry.metadata import migrate
from registry.metadata.pglocks import GC_LOCK, SWEEP_LOCK
from registry.testing.deadline import time_limit
from registry.testing.engines import PostgresEngine
from registry.testing.processes import free_port
from tests.registry.server import REPO_ROOT, Api, RegistryServer, sha256

TIMEOUT = 240


@pytest.fixture(autouse=True)
def deadline() -> Iterator[None]:
    """Fail a case that runs longer than TIMEOUT seconds instead of hanging the session."""
    with time_limit(TIMEOUT):
        yield


def _registry(*args: str, env: dict[str, str],
              input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "registry.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO_ROOT, input=input,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), **env})


def test_migrate_command(tmp_path: Path, postgres: PostgresEngine) -> None:
    env = {"REGISTRY_METADATA_URL": postgres.create_database("migrate_cmd")}
    first = _registry("migrate", "--root", str(tmp_path), env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == (
        f"registry migrate: metadata_url postgresql://registry:***@127.0.0.1:"
        f"{postgres.port}/migrate_cmd: schema version {migrate.latest_version()}")
    assert postgres.password not in first.stdout
    again = _registry("migrate", "--root", str(tmp_path), env=env)
    assert again.returncode == 0 and again.stdout == first.stdout


def test_serve_exits_at_once_when_the_database_is_unreachable(tmp_path: Path) -> None:
    url = f"postgresql://registry:secret@127.0.0.1:{free_port()}/registry"
    proc = _registry("serve", "--root", str(tmp_path), "--addr", f"127.0.0.1:{free_port()}",
                     env={"REGISTRY_METADATA_URL": url})  # a hang fails by _registry's timeout
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("registry: metadata_url postgresql://registry:***@127.0.0.1:")
    assert "Connection refused" in lines[0] and "secret" not in lines[0]


def test_token_auth_serves_on_a_fresh_database(tmp_path: Path,
                                               postgres: PostgresEngine) -> None:
    """Token auth keeps its signing key in the database: the schema is made before it is
    read, so the first replica on an empty database starts; an unreachable database is one
    line, not a traceback."""
    env = {"REGISTRY_METADATA_URL": postgres.create_database("fresh_token")}
    with RegistryServer(tmp_path / "a", args=("--auth", "token"), env=env) as server, \
            server.client() as c:
        assert c.get("/v2/").status_code == 401
    url = f"postgresql://registry:secret@127.0.0.1:{free_port()}/registry"
    proc = _registry("serve", "--root", str(tmp_path / "b"), "--auth", "token",
                     "--addr", f"127.0.0.1:{free_port()}", env={"REGISTRY_METADATA_URL": url})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("registry: metadata_url "), proc.stderr


def test_bad_metadata_url_is_a_config_error(tmp_path: Path) -> None:
    proc = _registry("serve", "--root", str(tmp_path), env={"REGISTRY_METADATA_URL": "x://y"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("registry: metadata_url must be empty (SQLite under root) "
                                   "or a postgresql:// URL, not 'x://y'")


def test_database_lost_at_run_time_answers_503(tmp_path: Path,
                                               postgres: PostgresEngine) -> None:
    url = postgres.create_database("lost_at_run_time")
    with RegistryServer(tmp_path / "root", workers=1,
                        env={"REGISTRY_METADATA_URL": url}) as server, server.client() as c:
        pushed = Api(c).image("pg/app", "v1")
        assert c.get(f"/v2/pg/app/manifests/{pushed.digest}").status_code == 200
        with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
            admin.execute('ALTER DATABASE "lost_at_run_time" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = 'lost_at_run_time'")
            try:
                for path in ("/v2/pg/app/manifests/v1", "/v2/pg/app/tags/list",
                             "/v2/_catalog"):
                    response = c.get(path)
                    assert response.status_code == 503, (path, response.text)
                    assert response.headers["content-type"] == "application/json"
                    errors = json.loads(response.text)["errors"]
                    assert [e["code"] for e in errors] == ["UNAVAILABLE"]
                    assert "metadata" in errors[0]["message"]
                health = c.get("/healthz")
                assert health.status_code == 503 and "metadata" in health.json()
            finally:
                admin.execute('ALTER DATABASE "lost_at_run_time" ALLOW_CONNECTIONS true')
        assert c.get("/v2/pg/app/manifests/v1").status_code == 200
        assert "Traceback" not in server.log()


def test_two_servers_share_the_metadata(tmp_path: Path, postgres: PostgresEngine) -> None:
    url = postgres.create_database("two_servers")
    env = {"REGISTRY_METADATA_URL": url}
    with RegistryServer(tmp_path / "a", env=env) as a, RegistryServer(tmp_path / "b", env=env
                                                                      ) as b:
        with a.client() as ca:
            Api(ca).image("shared/app", "v1")
            Api(ca).image("shared/app", "v2")
        with b.client() as cb:
            assert cb.get("/v2/shared/app/tags/list").json()["tags"] == ["v1", "v2"]
            assert cb.get("/v2/_catalog").json()["repositories"] == ["shared/app"]
            assert cb.delete("/v2/shared/app/manifests/v1").status_code == 202
        with a.client() as ca:
            assert ca.get("/v2/shared/app/tags/list").json()["tags"] == ["v2"]


def test_gc_uses_the_database_and_runs_once_at_a_time(tmp_path: Path,
                                                     postgres: PostgresEngine) -> None:
    url = postgres.create_database("gc_on_postgres")
    env = {"REGISTRY_METADATA_URL": url}
    root = tmp_path / "root"
    with RegistryServer(root, env=env) as server, server.client() as c:
        kept = Api(c).image("gc/app", "kept")
        gone = Api(c).image("gc/app", "gone", seed="other")
        assert c.delete(f"/v2/gc/app/manifests/{gone.digest}").status_code == 202
        collect = ("gc", "--root", str(root), "--grace", "0")
        with psycopg.connect(url, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", (GC_LOCK,))
            held = _registry(*collect, env=env)
            assert held.returncode == 1
            assert held.stderr.strip().startswith(
                "registry gc: another garbage collection is running on metadata_url "
                "postgresql://registry:***@")
            other.execute("SELECT pg_advisory_unlock(%s)", (GC_LOCK,))
        done = _registry(*collect, env=env)
        assert done.returncode == 0, done.stderr
        assert "blobs: deleted 3 " in done.stdout, done.stdout
        layers = json.loads(kept.body)["layers"]
        for digest in [kept.digest, json.loads(kept.body)["config"]["digest"],
                       *(layer["digest"] for layer in layers)]:
            kind = "manifests" if digest == kept.digest else "blobs"
            assert c.get(f"/v2/gc/app/{kind}/{digest}").status_code == 200, digest
        assert c.get(f"/v2/gc/app/manifests/{gone.digest}").status_code == 404


def test_users_and_signing_key_are_shared(tmp_path: Path, postgres: PostgresEngine) -> None:
    env = {"REGISTRY_METADATA_URL": postgres.create_database("shared_auth")}
    added = _registry("user", "add", "alice", "--password-stdin", "--root",
                      str(tmp_path / "a"), env=env, input="alice-password\n")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == (
        "registry: user 'alice' saved in metadata_url postgresql://registry:***@127.0.0.1:"
        f"{postgres.port}/shared_auth")
    listed = _registry("user", "list", "--root", str(tmp_path / "b"), env=env)
    assert listed.stdout.split() == ["alice", "-", "users"]
    assert not (tmp_path / "a" / "auth" / "users.json").exists()
    args = ("--auth", "token")
    env["REGISTRY_ACCESS"] = json.dumps(
        [{"repository": "**", "users": ["alice"], "actions": ["pull", "push"]}])
    with RegistryServer(tmp_path / "a", args=args, env=env) as a, \
            RegistryServer(tmp_path / "b", args=args, env=env) as b:
        with a.client() as c:
            got = c.get("/token", params={"service": "pybuild-registry",
                                          "scope": "repository:shared/app:pull,push"},
                        auth=("alice", "alice-password"))
            assert got.status_code == 200, got.text
            assert c.get("/token", params={"service": "pybuild-registry"},
                         auth=("alice", "wrong")).status_code == 401
        token = got.json()["token"]
        with b.client(headers={"Authorization": f"Bearer {token[:-4]}AAAA"}) as c:
            assert c.get("/v2/shared/app/tags/list").status_code == 401
        with b.client(headers={"Authorization": f"Bearer {token}"}) as c:
            assert c.get("/v2/").status_code == 200
            Api(c).image("shared/app", "v1")
        with a.client(headers={"Authorization": f"Bearer {token}"}) as c:
            assert c.get("/v2/shared/app/tags/list").json()["tags"] == ["v1"]
        with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
            admin.execute('ALTER DATABASE "shared_auth" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = 'shared_auth'")
            try:
                time.sleep(1.5)  # past the users cache
                with a.client() as c:
                    lost = c.get("/token", params={"service": "pybuild-registry"},
                                 auth=("alice", "alice-password"))
                assert lost.status_code == 503, lost.text
                assert [e["code"] for e in lost.json()["errors"]] == ["UNAVAILABLE"]
            finally:
                admin.execute('ALTER DATABASE "shared_auth" ALLOW_CONNECTIONS true')
        removed = _registry("user", "del", "alice", "--root", str(tmp_path / "c"), env=env)
        assert removed.returncode == 0, removed.stderr
        time.sleep(1.5)  # each process re-reads the users at most once a second
        with b.client() as c:
            assert c.get("/token", params={"service": "pybuild-registry"},
                         auth=("alice", "alice-password")).status_code == 401


def test_pushes_wait_for_a_sweep_on_any_host(tmp_path: Path, postgres: PostgresEngine) -> None:
    url = postgres.create_database("sweep_lock")
    with RegistryServer(tmp_path / "root", env={"REGISTRY_METADATA_URL": url}) as server, \
            server.client() as c, psycopg.connect(url, autocommit=True) as sweeper:
        Api(c).blob("locked/app", b"before")
        sweeper.execute("SELECT pg_advisory_lock(%s)", (SWEEP_LOCK,))
        result: list[int] = []
        pusher = threading.Thread(target=lambda: result.append(
            c.post("/v2/locked/app/blobs/uploads/", params={"digest": sha256(b"during")},
                   content=b"during").status_code))
        pusher.start()
        try:
            waiting = (0,)
            while waiting == (0,) and pusher.is_alive():
                waiting = sweeper.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND NOT granted").fetchone() or (0,)
                time.sleep(0.05)
            assert waiting != (0,) and not result
        finally:
            sweeper.execute("SELECT pg_advisory_unlock(%s)", (SWEEP_LOCK,))
        pusher.join(60)
        assert result == [201]
        assert c.head(f"/v2/locked/app/blobs/{sha256(b'during')}").status_code == 200


def test_login_lockout_holds_on_every_replica(tmp_path: Path,
                                              postgres: PostgresEngine) -> None:
    env = {"REGISTRY_METADATA_URL": postgres.create_database("shared_lockout"),
           "REGISTRY_LOGIN_MAX_FAILURES": "2", "REGISTRY_LOGIN_LOCKOUT": "600"}
    _registry("user", "add", "bob", "--password-stdin", "--root", str(tmp_path / "a"),
              env=env, input="bob-password\n")
    params = {"service": "pybuild-registry"}
    args = ("--auth", "token")
    with RegistryServer(tmp_path / "a", args=args, env=env) as a, \
            RegistryServer(tmp_path / "b", args=args, env=env) as b, \
            a.client() as ca, b.client() as cb:
        assert cb.get("/token", params=params, auth=("bob", "bob-password")).status_code == 200
        for _ in range(2):
            assert ca.get("/token", params=params, auth=("bob", "bad")).status_code == 401
        locked = cb.get("/token", params=params, auth=("bob", "bob-password"))
        assert locked.status_code == 429, locked.text
        assert int(locked.headers["Retry-After"]) > 500
        assert not (tmp_path / "b" / "run" / "login-throttle.db").exists()


def test_token_auth_on_a_fresh_database(tmp_path: Path, postgres: PostgresEngine) -> None:
    """The schema is made before the token signing key is read from it."""
    url = postgres.create_database("fresh_token_auth")
    with RegistryServer(tmp_path / "root", args=["--auth", "token"],
                        env={"REGISTRY_METADATA_URL": url}) as server, server.client() as c:
        assert c.get("/v2/").status_code == 401
    assert "Traceback" not in server.log()
