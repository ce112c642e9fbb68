"""Tag policies in a running ``registry serve`` (SQLite, and PostgreSQL shared by two
replicas): immutable tags refuse a move and a delete with DENIED naming the rule, allow the
same digest again; two replicas racing to push an immutable new tag: exactly one wins;
``registry retention run`` removes exactly what ``--dry-run`` listed and ``registry gc``
then frees the blobs."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.testing.deadline import time_limit
from registry.testing.engines import PostgresEngine
from tests.registry.server import REPO_ROOT, Api, Pushed, RegistryServer, error_codes

TIMEOUT = 300


@pytest.fixture(autouse=True)
def deadline() -> Iterator[None]:
    """Fail a case that hangs instead of the session."""
    with time_limit(TIMEOUT):
        yield


@pytest.fixture(params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The environment of the servers and commands: SQLite under the root, or a fresh
    PostgreSQL database."""
    if request.param == "sqlite":
        return {}
    engine: PostgresEngine = request.getfixturevalue("postgres")
    name = "tps_" + str(abs(hash(str(tmp_path))))[:16]
    return {"REGISTRY_METADATA_URL": engine.create_database(name)}


def registry(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``registry ARGS --root ROOT``."""
    return subprocess.run([sys.executable, "-m", "registry.cli", *args, "--root", str(root)],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), **env})


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The standard output of a command that must succeed."""
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_immutable_tags_over_http(tmp_path: Path, env: dict[str, str]) -> None:
    root = tmp_path / "root"
    with RegistryServer(root, env=env, args=("--auth", "none")) as server, \
            server.client() as client:
        api = Api(client)
        first = api.image("team/app", "v1")
        other = api.image("team/app", "dev")
        ok(registry(root, env, "project", "create", "team"))
        rule = json.loads(ok(registry(root, env, "immutable", "add", "team", "--repos",
                                      "**", "--tags", "v*", "--json")))
        assert api.manifest("team/app", "v1", first.body).status_code == 201  # same digest
        moved = api.manifest("team/app", "v1", other.body)
        assert moved.status_code == 403 and error_codes(moved) == ["DENIED"]
        entry = moved.json()["errors"][0]
        assert "tag 'v1' of 'team/app' is immutable" in entry["message"]
        assert f"immutability rule {rule['id']}" in entry["message"]
        assert entry["detail"] == {"name": "team/app", "tag": "v1", "rule": rule["id"],
                                   "reason": "the tag is immutable"}
        by_query = api.manifest("team/app", other.digest, other.body, tag="v1")
        assert by_query.status_code == 403
        for reference in ("v1", first.digest):
            deleted = client.delete(f"/v2/team/app/manifests/{reference}")
            assert deleted.status_code == 403 and error_codes(deleted) == ["DENIED"]
            assert "may not be deleted" in deleted.json()["errors"][0]["message"]
        assert client.get("/v2/team/app/manifests/v1").headers[
            "docker-content-digest"] == first.digest
        # A new immutable tag may be made; tags the rule does not match still move.
        assert api.manifest("team/app", "v2", other.body).status_code == 201
        assert api.manifest("team/app", "dev", first.body).status_code == 201
        assert client.delete("/v2/team/app/manifests/dev").status_code == 202
        ok(registry(root, env, "immutable", "remove", "team", str(rule["id"])))
        assert api.manifest("team/app", "v1", other.body).status_code == 201


def test_two_replicas_race_for_an_immutable_new_tag(tmp_path: Path,
                                                    postgres: PostgresEngine) -> None:
    env = {"REGISTRY_METADATA_URL": postgres.create_database("tagpolicy_race")}
    roots = [tmp_path / "a", tmp_path / "b"]
    with RegistryServer(roots[0], env=env, args=("--auth", "none")) as one, \
            RegistryServer(roots[1], env=env, args=("--auth", "none")) as two, \
            one.client() as c1, two.client() as c2:
        ok(registry(roots[0], env, "project", "create", "team"))
        ok(registry(roots[0], env, "immutable", "add", "team", "--tags", "release-*"))
        for attempt in range(5):
            tag = f"release-{attempt}"
            images: list[Pushed] = [Api(c1).image("team/app", seed=f"a{attempt}"),
                                    Api(c2).image("team/app", seed=f"b{attempt}")]
            # Each replica has its own blob store: give each the other's image too.
            for api, image in ((Api(c1), images[1]), (Api(c2), images[0])):
                doc = json.loads(image.body)
                for desc in (doc["config"], *doc["layers"]):
                    source = c2 if api.client is c1 else c1
                    data = source.get(f"/v2/team/app/blobs/{desc['digest']}").content
                    api.blob("team/app", data)
            barrier = threading.Barrier(2)
            statuses: dict[int, int] = {}

            def push(i: int, client, image: Pushed, tag: str = tag,
                     barrier: threading.Barrier = barrier,
                     statuses: dict[int, int] = statuses) -> None:
                barrier.wait()
                statuses[i] = Api(client).manifest("team/app", tag, image.body).status_code

            threads = [threading.Thread(target=push, args=(0, c1, images[0])),
                       threading.Thread(target=push, args=(1, c2, images[1]))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sorted(statuses.values()) == [201, 403], statuses
            winner = images[0] if statuses[0] == 201 else images[1]
            for client in (c1, c2):
                got = client.head(f"/v2/team/app/manifests/{tag}")
                assert got.headers["docker-content-digest"] == winner.digest


def removal_lines(output: str, prefix: str) -> list[str]:
    """The manifest lines of a retention report, without their verb."""
    return sorted(line.removeprefix(prefix) for line in output.splitlines()
                  if line.startswith(prefix))


def test_retention_run_removes_what_the_dry_run_listed(tmp_path: Path,
                                                       env: dict[str, str]) -> None:
    root = tmp_path / "root"
    with RegistryServer(root, env=env, args=("--auth", "none")) as server, \
            server.client() as client:
        api = Api(client)
        builds = [api.image("team/app", f"build-{i}", seed=f"b{i}") for i in range(4)]
        release = api.image("team/app", "release-1", seed="r")
        children = [api.image("team/app", seed=f"c{i}") for i in range(2)]
        old_index = api.index("team/app", "multi", children)
        signature = api.artifact("team/app", builds[0], "application/vnd.example.sig")
        pinned = api.image("team/app", "v1", seed="pinned")
        elsewhere = api.image("other/app", "build-0", seed="o")
        builds.append(api.image("team/app", "build-4", seed="b4"))
        ok(registry(root, env, "project", "create", "team"))
        ok(registry(root, env, "retention", "add", "team", "--keep-latest", "2",
                    "--tags", "build-*"))
        ok(registry(root, env, "retention", "add", "team", "--keep-tags", "release-*"))
        ok(registry(root, env, "immutable", "add", "team", "--tags", "v*"))
        listing = ok(registry(root, env, "retention", "list", "team"))
        assert "keep=latest=2" in listing and "keep=always" in listing

        dry = ok(registry(root, env, "retention", "run", "--dry-run"))
        planned = removal_lines(dry, "would remove ")
        expected = {builds[0].digest, builds[1].digest, builds[2].digest, old_index.digest,
                    children[0].digest, children[1].digest, signature.digest}
        assert {line.split("\t")[0].split("@")[1] for line in planned} == expected, dry
        again = ok(registry(root, env, "retention", "run", "--dry-run", "--project", "team"))
        assert removal_lines(again, "would remove ") == planned  # a dry run changes nothing

        gc_dry = ok(registry(root, env, "gc", "--dry-run", "--grace", "0"))
        assert removal_lines(gc_dry, "would remove ") == planned
        run = ok(registry(root, env, "gc", "--grace", "0"))
        assert removal_lines(run, "removed ") == planned, run
        assert "manifests: deleted 0" in run  # retention removed them; nothing else went
        audited = json.loads(ok(registry(root, env, "audit", "--project", "team", "--json")))
        assert {e["digest"] for e in audited if e["action"] == "retention.delete"} == expected
        every = json.loads(ok(registry(root, env, "audit", "--json")))
        (summary,) = [e for e in every if e["action"] == "retention.run"]  # dry runs: none
        assert summary["detail"].startswith(f"removed={len(expected)} skipped=0 "), summary
        assert (summary["project"], summary["address"]) == ("", "local")  # all projects

        for gone in expected:
            assert client.head(f"/v2/team/app/manifests/{gone}").status_code == 404
        for kept in (builds[3], builds[4], release, pinned):
            assert client.head(f"/v2/team/app/manifests/{kept.digest}").status_code == 200
        assert client.head(f"/v2/other/app/manifests/{elsewhere.digest}").status_code == 200
        freed = json.loads(builds[0].body)["layers"][0]["digest"]
        assert client.head(f"/v2/team/app/blobs/{freed}").status_code == 404
        kept_layer = json.loads(builds[4].body)["layers"][0]["digest"]
        assert client.head(f"/v2/team/app/blobs/{kept_layer}").status_code == 200
        tags = client.get("/v2/team/app/tags/list").json()["tags"]
        assert sorted(tags) == ["build-3", "build-4", "release-1", "v1"]
        nothing = ok(registry(root, env, "retention", "run"))
        assert removal_lines(nothing, "removed ") == []


def test_bad_input_is_one_line_naming_the_argument_and_changes_nothing(
        tmp_path: Path) -> None:
    root, env = tmp_path / "root", {}
    ok(registry(root, env, "project", "create", "team"))
    ok(registry(root, env, "immutable", "add", "team", "--tags", "v*"))
    ok(registry(root, env, "retention", "add", "team", "--keep-days", "30"))
    before = (ok(registry(root, env, "immutable", "list", "--json")),
              ok(registry(root, env, "retention", "list", "--json")))
    for args, named in [
        (("immutable", "add", "team", "--tags", "v{1"), "--tags: "),
        (("immutable", "add", "team", "--repos", "a b", "--tags", "v*"), "--repos: "),
        (("immutable", "add", "No_Such!", "--tags", "v*"), "PROJECT: "),
        (("immutable", "add", "ghost", "--tags", "v*"),
         "PROJECT: project 'ghost' does not exist"),
        (("retention", "add", "ghost", "--keep-days", "3"),
         "PROJECT: project 'ghost' does not exist"),
        (("immutable", "remove", "team", "42"), "RULE: no immutability rule 42"),
        (("immutable", "remove", "team", "one"), "RULE: "),
        (("retention", "add", "team", "--keep-latest", "0"), "--keep-latest: "),
        (("retention", "add", "team", "--keep-latest", "2.5"), "--keep-latest: "),
        (("retention", "add", "team", "--keep-days", "-3"), "--keep-days: "),
        (("retention", "add", "team", "--keep-tags", "[x]"), "--keep-tags: "),
        (("retention", "add", "team", "--keep-latest", "3", "--tags", "{a,{b}}"), "--tags: "),
        (("retention", "remove", "team", "7"), "RULE: no retention rule 7"),
        (("retention", "run", "--project", "Bad Name"), "--project: "),
    ]:
        result = registry(root, env, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and named in lines[0], (args, result.stderr)
    after = (ok(registry(root, env, "immutable", "list", "--json")),
             ok(registry(root, env, "retention", "list", "--json")))
    assert after == before
