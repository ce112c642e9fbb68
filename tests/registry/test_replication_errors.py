"""Bad replication input gets one clear line naming the flag or setting: malformed
patterns, URLs and intervals, an unknown rule, an unreachable registry, missing or refused
credentials (and the right ones, from the docker config.json, work); nothing is copied by
a rule that fails."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry.cli import main
from registry.testing.deadline import time_limit
from registry.testing.processes import RegistryProcess, distribution, free_port
from tests.peers import require
from tests.registry.client.test_distribution import PASSWORD, USER, htpasswd
from tests.registry.replication_env import TIMEOUT, Cli, manifest
from tests.registry.server import Api, RegistryServer


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryServer, Cli]]:
    """One of ours holding an image, and its replicate command."""
    tmp = tmp_path_factory.mktemp("replication-errors")
    server = RegistryServer(tmp / "root", args=["--no-access-log"]).start()
    with server.client() as client:
        Api(client).image("team/app", "v1", seed="errors")
    yield server, Cli(tmp / "root", tmp / "docker")
    server.stop()


@pytest.mark.parametrize(("args", "message"), [
    (["--to", "http://127.0.0.1:1", "--repos", "team/{a,b"],
     "--repos: 'team/{a,b' has a '{' that is never closed"),
    (["--to", "http://127.0.0.1:1", "--tags", "v[1"], "--tags: 'v[1' holds '['"),
    (["--to", "http://127.0.0.1:1", "--tags", "v1}"], "--tags: 'v1}' has a '}' without"),
    (["--to", "http://127.0.0.1:1", "--repos", ""], "--repos: the pattern is empty"),
    (["--to", "ftp://example.org"], "--to 'ftp://example.org': not a registry URL"),
    (["--from", "http://user:pw@example.org"], "credentials do not belong in the URL"),
    (["--to", "http://example.org/v2/team"], "--to 'http://example.org/v2/team': give"),
    (["--to", "http://example.org:99999"], "the port is not a number"),
    (["--to", "http://example.org", "--every", "soon"], "--every 'soon': not a duration"),
    (["--to", "http://example.org", "--every", "3s"], "at least 5s"),
    (["--from", "http://example.org", "--on-push"], "--on-push: only a --to rule"),
])
def test_malformed_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                         args: list[str], message: str) -> None:
    """Each malformed flag is named in one line; no rule is added."""
    root = ["--root", str(tmp_path / "root")]
    assert main(["replicate", "add", *root, "bad", *args]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert main(["replicate", "list", *root]) == 0
    assert capsys.readouterr().out == ""


def test_unknown_rule_and_bad_name(source: tuple[RegistryServer, Cli]) -> None:
    """An unknown rule and a malformed name are named."""
    _, cli = source
    assert "NAME 'nope': no such replication rule" in cli("run", "nope", ok=False).stderr
    assert "NAME 'Bad Name'" in cli("add", "Bad Name", "--to", "http://x.org",
                                    ok=False).stderr


def test_unreachable_registry(source: tuple[RegistryServer, Cli]) -> None:
    """A registry nobody listens on: the run names --to and the URL; the failed run is in
    the history."""
    server, cli = source
    url = f"http://127.0.0.1:{free_port()}"
    with time_limit(TIMEOUT):
        cli("add", "nowhere", "--to", url, "--local-url", server.url)
        done = cli("run", "nowhere", ok=False)
        assert f"--to {url}: cannot reach registry" in done.stderr, done.stderr
        assert "connection refused" in done.stderr
        assert "Traceback" not in done.stderr
        cli("remove", "nowhere")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """CNCF distribution asking for a password (htpasswd)."""
    require("docker-registry")
    tmp = tmp_path_factory.mktemp("replication-htpasswd")
    proc = distribution(tmp / "dist", htpasswd=htpasswd(tmp / "htpasswd")).start()
    yield proc
    proc.stop()


def _login(cli: Cli, registry: RegistryProcess, password: str) -> None:
    cli.docker_config.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
    (cli.docker_config / "config.json").write_text(json.dumps(
        {"auths": {registry.address: {"auth": auth}}}))


def test_credentials(source: tuple[RegistryServer, Cli], guarded: RegistryProcess) -> None:
    """No credentials, then wrong ones, are named with --to and the config file; the right
    ones from config.json copy the image."""
    server, cli = source
    with time_limit(TIMEOUT):
        cli("add", "guarded", "--to", guarded.url, "--local-url", server.url)
        config = cli.docker_config / "config.json"
        missing = cli("run", "guarded", ok=False).stderr
        assert f"--to {guarded.url}: registry {guarded.address} needs credentials" in missing
        _login(cli, guarded, "wrong")
        refused = cli("run", "guarded", ok=False).stderr
        assert f"--to {guarded.url}: registry {guarded.address} refused the credentials" \
            in refused, refused
        assert f"credentials come from {config}" in refused
        assert "Traceback" not in refused
        _login(cli, guarded, PASSWORD)
        done = cli.json("run", "guarded")
        assert done["state"] == "succeeded" and done["manifests"] == 1, done
        states = [r["state"] for r in cli.json("history", "guarded")]
        assert states == ["succeeded", "failed", "failed"]
        config.unlink()


def test_a_broken_image_fails_the_run_not_the_others(
        source: tuple[RegistryServer, Cli], tmp_path: Path) -> None:
    """A tag whose layer the source lost is named in the run's error; the other tags are
    copied all the same."""
    server, cli = source
    require("docker-registry")
    far = distribution(tmp_path / "dist").start()
    try:
        with time_limit(TIMEOUT), server.client() as a, httpx.Client(
                base_url=far.url, timeout=60) as f:
            api = Api(a)
            api.image("broken/app", "ok", seed="ok")
            bad = json.loads(api.image("broken/app", "bad", seed="bad").body)
            layer = bad["layers"][0]["digest"]
            assert a.delete(f"/v2/broken/app/blobs/{layer}").status_code == 202
            cli("add", "broken", "--to", far.url, "--repos", "{broken/app,broken/none}",
                "--local-url", server.url)
            done = cli("run", "broken", ok=False)
            assert "1 of 2 tags not copied; the first: broken/app:bad:" in done.stderr
            assert layer in done.stderr and "Traceback" not in done.stderr
            assert manifest(f, "broken/app", "ok").status_code == 200
            assert manifest(f, "broken/app", "bad").status_code == 404
            cli("remove", "broken")
    finally:
        far.stop()
