"""A replication killed with ``kill -9`` half way resumes: the next run takes over the
interrupted one (recorded as such in the history and on /metrics) and completes without
sending again a blob that already arrived (the far registry counts the uploads it
completed). A registry without rules gets no replication database."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.testing.deadline import time_limit
from tests.registry.replication_env import TIMEOUT, Cli, upload_count
from tests.registry.server import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Api, RegistryServer

LAYERS = 16
LAYER_BYTES = 6 << 20


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RegistryServer, RegistryServer, Cli]]:
    """A source holding one big image, an empty far registry, the source's command."""
    servers = []
    for name in ("source", "far"):
        (tmp_path / name).mkdir()
        servers.append(RegistryServer(tmp_path / name / "root",
                                      args=["--no-access-log"]).start())
    try:
        yield servers[0], servers[1], Cli(tmp_path / "source" / "root", tmp_path / "docker")
    finally:
        for server in servers:
            server.stop()


def _push_big_image(api: Api, repo: str) -> int:
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layers = [api.blob(repo, os.urandom(LAYER_BYTES)) for _ in range(LAYERS)]
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": OCI_CONFIG, "digest": api.blob(repo, config),
                      "size": len(config)},
           "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": LAYER_BYTES}
                      for d in layers]}
    assert api.manifest(repo, "big", doc).status_code == 201
    return LAYERS + 1


def test_killed_run_resumes_without_resending(
        pair: tuple[RegistryServer, RegistryServer, Cli]) -> None:
    """kill -9 after a few blobs arrived; the next run sends only the rest."""
    source, far, cli = pair
    with time_limit(TIMEOUT), source.client() as a, far.client() as f:
        blobs = _push_big_image(Api(a), "big/image")
        cli("add", "big", "--to", far.url, "--local-url", source.url)
        proc = cli.popen("run", "big")
        try:
            deadline = time.monotonic() + 60
            while upload_count(f) < 3:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the run ended before it could be killed: "
                                f"{proc.communicate()}")
                time.sleep(0.02)
            proc.kill()
        finally:
            proc.wait(30)
        arrived = upload_count(f)
        while True:  # an upload whose body had arrived may still be committed
            time.sleep(1)
            if upload_count(f) == arrived:
                break
            arrived = upload_count(f)
        assert arrived < blobs, "the run finished before it was killed"
        assert f.get("/v2/big/image/manifests/big").status_code == 404
        done = cli.json("run", "big")
        assert done["state"] == "succeeded", done
        assert done["resumed"] is not None
        assert done["skipped"] >= arrived
        assert upload_count(f) == blobs
        assert f.head("/v2/big/image/manifests/big").status_code == 200
        states = [r["state"] for r in cli.json("history", "big")]
        assert states == ["succeeded", "interrupted"]
        metrics = a.get("/metrics").text
        assert 'registry_replication_runs_total{rule="big",state="interrupted"} 1' in metrics
        assert far.root is not None and not (far.root / "replication.db").exists()
        assert not (cli.root / "replication" / "spool" / "big").exists()
