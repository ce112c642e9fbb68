"""Replication between real registries: ``registry replicate`` pushes an image, a
multi-platform index and a referrer from one of our registries to CNCF distribution and to
a second instance of ours, and pulls them back from each into a third and a fourth; the
copies are byte for byte the same, the referrer is found on every side (through the
referrers API or distribution's fallback tag), and a second run sends nothing."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.testing.deadline import time_limit
from registry.testing.processes import RegistryProcess, distribution
from tests.peers import require
from tests.registry.replication_env import (
    TIMEOUT,
    Cli,
    assert_arrived,
    referrer_digests,
)
from tests.registry.server import Api, Pushed, RegistryServer


@dataclass(frozen=True)
class Ours:
    """One of our registries and the replicate command on its root."""

    server: RegistryServer
    cli: Cli

    @property
    def url(self) -> str:
        """Its base URL."""
        return self.server.url

    def client(self) -> httpx.Client:
        """An HTTP client for it."""
        return self.server.client()


@dataclass(frozen=True)
class Content:
    """What the source holds in ``repo``: an image (``v1``), an index over two platform
    images (``multi``) and an artifact referring to the index."""

    repo: str
    image: Pushed
    index: Pushed
    referrer: Pushed


def start_ours(tmp: Path, name: str) -> Ours:
    """A registry of ours on loopback."""
    (tmp / name).mkdir(parents=True, exist_ok=True)
    server = RegistryServer(tmp / name / "root", args=["--no-access-log"]).start()
    return Ours(server, Cli(tmp / name / "root", tmp / name / "docker"))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """The source, a second and third of ours, CNCF distribution, and the content."""
    require("docker-registry")
    tmp = tmp_path_factory.mktemp("replication")
    started: list[Ours] = []
    dist: RegistryProcess | None = None
    try:
        for name in ("source", "far", "back", "fromdist"):
            started.append(start_ours(tmp, name))
        dist = distribution(tmp / "distribution").start()
        source = started[0]
        with source.client() as client:
            api = Api(client)
            repo = "team/app"
            image = api.image(repo, "v1", layers=2, seed="v1")
            children = [api.image(repo, None, layers=2, seed=f"arch{i}") for i in range(2)]
            index = api.index(repo, "multi", children)
            referrer = api.artifact(repo, index, "application/vnd.example.sbom",
                                    {"org.example": "sbom"})
            api.image("other/thing", "latest", seed="other")
        yield {"source": source, "far": started[1], "back": started[2],
               "fromdist": started[3], "dist": dist,
               "content": Content(repo, image, index, referrer)}
    finally:
        for ours in started:
            ours.server.stop()
        if dist is not None:
            dist.stop()


def _check_copy(source: httpx.Client, target: httpx.Client, content: Content) -> None:
    for tag in ("v1", "multi"):
        assert_arrived(source, target, content.repo, tag)
    assert content.referrer.digest in referrer_digests(target, content.repo, content.index)


def test_push_to_distribution_and_pull_back(world: dict[str, object]) -> None:
    """--to distribution copies the image, the index with both platforms and the
    referrer; --from distribution brings them into another registry of ours."""
    source, fromdist = world["source"], world["fromdist"]
    dist = world["dist"]
    content = world["content"]
    assert isinstance(source, Ours) and isinstance(fromdist, Ours)
    assert isinstance(dist, RegistryProcess) and isinstance(content, Content)
    with time_limit(TIMEOUT):
        source.cli("add", "to-dist", "--to", dist.url, "--repos", "team/**",
                   "--local-url", source.url)
        done = source.cli.json("run", "to-dist")
        assert done["state"] == "succeeded", done
        assert done["manifests"] == 5 and done["blobs"] >= 8, done
        with source.client() as a, httpx.Client(base_url=dist.url, timeout=60) as d:
            _check_copy(a, d, content)
            assert d.get("/v2/other/thing/tags/list").status_code == 404
        fromdist.cli("add", "from-dist", "--from", dist.url, "--tags", "{v1,multi}",
                     "--local-url", fromdist.url)
        pulled = fromdist.cli.json("run", "from-dist")
        assert pulled["state"] == "succeeded", pulled
        with source.client() as a, fromdist.client() as c:
            _check_copy(a, c, content)
        again = fromdist.cli.json("run", "from-dist")
        assert (again["manifests"], again["blobs"], again["state"]) == (0, 0, "succeeded")


def test_push_to_ours_and_pull_back(world: dict[str, object]) -> None:
    """--to a second instance of ours and --from it into a third, the referrer listed by
    the referrers API on each; a referrer of a platform image pushed later arrives with
    the next run."""
    source, far, back = world["source"], world["far"], world["back"]
    content = world["content"]
    assert isinstance(source, Ours) and isinstance(far, Ours) and isinstance(back, Ours)
    assert isinstance(content, Content)
    with time_limit(TIMEOUT):
        source.cli("add", "to-far", "--to", far.url, "--local-url", source.url)
        plan = source.cli.json("run", "to-far", "--dry-run")
        assert {(c["repository"], c["tag"]) for c in plan["copy"]} >= {
            (content.repo, "v1"), (content.repo, "multi"), ("other/thing", "latest")}
        with far.client() as f:
            assert f.get(f"/v2/{content.repo}/tags/list").status_code == 404
        done = source.cli.json("run", "to-far")
        assert done["state"] == "succeeded", done
        with source.client() as a, far.client() as f:
            _check_copy(a, f, content)
            assert_arrived(a, f, "other/thing", "latest")
        back.cli("add", "from-far", "--from", far.url, "--repos", "team/*",
                 "--local-url", back.url)
        assert back.cli.json("run", "from-far")["state"] == "succeeded"
        with source.client() as a, back.client() as b:
            _check_copy(a, b, content)
            assert b.get("/v2/other/thing/tags/list").status_code == 404
        with source.client() as a, far.client() as f:
            child = Pushed(b"", "", "")
            for entry in json.loads(content.index.body)["manifests"][:1]:
                raw = a.get(f"/v2/{content.repo}/manifests/{entry['digest']}",
                            headers={"Accept": entry["mediaType"]}).content
                child = Pushed(raw, entry["digest"], entry["mediaType"])
            late = Api(a).artifact(content.repo, child, "application/vnd.example.sig")
            again = source.cli.json("run", "to-far")
            assert again["manifests"] == 1 and again["state"] == "succeeded", again
            assert late.digest in referrer_digests(f, content.repo, child)
        history = source.cli.json("history", "to-far")
        assert [r["state"] for r in history] == ["succeeded", "succeeded"]
        status = source.cli.json("status", "to-far")
        assert status["last_run"]["id"] == again["id"]
        listed = source.cli.json("list")
        assert {r["name"] for r in listed} >= {"to-far"}


def test_mount_and_deletes(world: dict[str, object]) -> None:
    """A blob already copied into one repository is mounted into another; a tag deleted
    at the source is deleted at the destination only by a rule with --deletes."""
    source, far = world["source"], world["far"]
    assert isinstance(source, Ours) and isinstance(far, Ours)
    name = uuid.uuid4().hex[:8]
    with time_limit(TIMEOUT), source.client() as a, far.client() as f:
        api = Api(a)
        first = f"mount-{name}/one"
        pushed = api.image(first, "keep", seed=name)
        api.image(first, "gone", seed=name + "g")
        second = f"mount-{name}/two"
        a.post(f"/v2/{second}/blobs/uploads/", params={"mount": _config_of(a, first, "keep"),
                                                          "from": first})
        for layer in _layers_of(a, first, "keep"):
            a.post(f"/v2/{second}/blobs/uploads/", params={"mount": layer, "from": first})
        assert api.manifest(second, "keep", pushed.body).status_code == 201
        source.cli("add", f"keep-{name}", "--to", far.url, "--repos", f"mount-{name}/*",
                   "--local-url", source.url)
        source.cli("add", f"del-{name}", "--to", far.url, "--repos", f"mount-{name}/*",
                   "--deletes", "--local-url", source.url)
        done = source.cli.json("run", f"keep-{name}")
        assert done["mounted"] >= 1, done
        assert a.delete(f"/v2/{first}/manifests/gone").status_code == 202
        source.cli.json("run", f"keep-{name}")
        assert f.head(f"/v2/{first}/manifests/gone").status_code == 200
        plan = source.cli("run", f"del-{name}", "--dry-run").stdout
        assert f"would delete {first}:gone" in plan
        assert f.head(f"/v2/{first}/manifests/gone").status_code == 200
        removed = source.cli.json("run", f"del-{name}")
        assert removed["deleted"] == 1, removed
        assert f.head(f"/v2/{first}/manifests/gone").status_code == 404
        assert f.head(f"/v2/{first}/manifests/keep").status_code == 200


def _config_of(client: httpx.Client, repo: str, tag: str) -> str:
    from tests.registry.replication_env import manifest

    return str(manifest(client, repo, tag).json()["config"]["digest"])


def _layers_of(client: httpx.Client, repo: str, tag: str) -> list[str]:
    from tests.registry.replication_env import manifest

    return [str(x["digest"]) for x in manifest(client, repo, tag).json()["layers"]]


def _until(check: Callable[[], bool], what: str, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s")
        time.sleep(0.2)


def test_triggers_audit_and_metrics(world: dict[str, object]) -> None:
    """An --on-push rule copies each push as it happens (and, with --deletes, each tag
    deleted), an --every rule runs on its schedule; runs are in the audit log and on
    /metrics."""
    source, far = world["source"], world["far"]
    assert isinstance(source, Ours) and isinstance(far, Ours)
    with time_limit(TIMEOUT), source.client() as a, far.client() as f:
        source.cli("add", "hooked", "--to", far.url, "--repos", "hooked/*", "--on-push",
                   "--tags", "v*", "--deletes", "--local-url", source.url)
        source.cli("add", "timed", "--to", far.url, "--repos", "timed/*", "--every", "5s",
                   "--local-url", source.url)
        api = Api(a)
        api.image("hooked/app", "v1", seed="hooked1")
        _until(lambda: f.head("/v2/hooked/app/manifests/v1").status_code == 200,
               "on-push copy of hooked/app:v1")
        api.image("hooked/app", "v2", seed="hooked2")
        api.image("hooked/app", "skip", seed="hooked3")
        _until(lambda: f.head("/v2/hooked/app/manifests/v2").status_code == 200,
               "on-push copy of hooked/app:v2")
        assert_arrived(a, f, "hooked/app", "v2")
        assert f.head("/v2/hooked/app/manifests/skip").status_code == 404
        assert a.delete("/v2/hooked/app/manifests/v1").status_code == 202
        _until(lambda: f.head("/v2/hooked/app/manifests/v1").status_code == 404,
               "on-push delete of hooked/app:v1")
        assert f.head("/v2/hooked/app/manifests/v2").status_code == 200
        api.image("timed/app", "v1", seed="timed")
        _until(lambda: f.head("/v2/timed/app/manifests/v1").status_code == 200,
               "scheduled copy of timed/app:v1")
        hooked = source.cli.json("history", "hooked")
        assert {r["trigger"] for r in hooked} == {"on_push"}
        assert all(r["state"] == "succeeded" for r in hooked), hooked
        assert "schedule" in {r["trigger"] for r in source.cli.json("history", "timed")}
        _until(lambda: any(e["action"] == "replication.run" and "name=hooked" in e["detail"]
                           for e in _audit(source)), "replication.run in the audit log")
        actions = {e["action"] for e in _audit(source)}
        assert {"replication.add", "replication.start", "replication.run"} <= actions
        metrics = a.get("/metrics").text
        assert 'registry_replication_runs_total{rule="hooked",state="succeeded"}' in metrics
        assert 'registry_replication_blobs_total{rule="hooked"}' in metrics
        source.cli("remove", "timed")
        source.cli("remove", "hooked")


def _audit(ours: Ours) -> list[dict[str, Any]]:
    done = subprocess.run([*ours.cli.argv("x")[:3], "audit", "--root", str(ours.cli.root),
                           "--json", "--limit", "1000"], capture_output=True, text=True,
                          env=ours.cli.env(), timeout=TIMEOUT, check=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]
