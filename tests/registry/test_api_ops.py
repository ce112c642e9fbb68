"""Running the registry: read-only mode, metrics, health checks, request logs and the
precedence of config file, environment and flags."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from registry.config import ConfigError, Settings, load_settings
from tests.registry.server import (
    REPO_ROOT,
    Api,
    RegistryServer,
    error_codes,
    free_port,
    sha256,
)


def test_read_only_mode_refuses_writes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with RegistryServer(root) as server, server.client() as c:
        pushed = Api(c).image("ro/app", "v1")
        session = httpx.URL(c.post("/v2/ro/app/blobs/uploads/").headers["Location"]).path
    with RegistryServer(root, args=["--read-only"]) as server, server.client() as c:
        assert c.get("/v2/ro/app/manifests/v1").content == pushed.body
        assert c.get("/v2/ro/app/tags/list").json()["tags"] == ["v1"]
        assert c.get("/v2/_catalog").json()["repositories"] == ["ro/app"]
        for method, path, kwargs in [
            ("POST", "/v2/ro/app/blobs/uploads/", {}),
            ("POST", "/v2/ro/app/blobs/uploads/", {"params": {"digest": sha256(b"x")},
                                                   "content": b"x"}),
            ("PATCH", session, {"content": b"x"}),
            ("PUT", session, {"params": {"digest": sha256(b"")}}),
            ("DELETE", session, {}),
            ("PUT", "/v2/ro/app/manifests/v2", {"content": pushed.body}),
            ("DELETE", "/v2/ro/app/manifests/v1", {}),
            ("DELETE", f"/v2/ro/app/blobs/{sha256(b'x')}", {}),
        ]:
            r = c.request(method, path, **kwargs)  # type: ignore[arg-type]
            assert r.status_code == 405, (method, path, r.text)
            assert error_codes(r) == ["UNSUPPORTED"]
            assert "read-only" in r.json()["errors"][0]["message"]
        assert c.get("/v2/ro/app/manifests/v1").status_code == 200


def test_deletion_can_be_disabled(tmp_path: Path) -> None:
    env = {"REGISTRY_DELETE_ENABLED": "false"}
    with RegistryServer(tmp_path / "root", env=env) as server, server.client() as c:
        pushed = Api(c).image("nodelete/app", "v1")
        for path in ("/v2/nodelete/app/manifests/v1",
                     f"/v2/nodelete/app/manifests/{pushed.digest}"):
            r = c.delete(path)
            assert r.status_code == 405
            assert error_codes(r) == ["UNSUPPORTED"]


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition (0 if absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    key = f"{name}{{{wanted}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics(tmp_path: Path) -> None:
    with RegistryServer(tmp_path / "root") as server, server.client() as c:
        api = Api(c)
        pushed = api.image("metrics/app", "v1")
        for _ in range(3):
            assert c.get("/v2/metrics/app/manifests/v1").status_code == 200
        c.get("/v2/metrics/app/manifests/nope")
        session = c.post("/v2/metrics/app/blobs/uploads/").headers["Location"]
        r = c.get("/metrics")
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.text
        assert metric(text, "registry_http_requests_total", method="GET", route="manifests",
                      status="200") == 3
        assert metric(text, "registry_http_requests_total", method="GET", route="manifests",
                      status="404") == 1
        assert metric(text, "registry_http_requests_total", method="PUT", route="manifests",
                      status="201") == 1
        assert metric(text, "registry_http_sent_bytes_total") >= 3 * len(pushed.body)
        assert metric(text, "registry_http_received_bytes_total") >= len(pushed.body)
        assert metric(text, "registry_upload_sessions_open") == 1
        assert metric(text, "registry_http_request_duration_seconds_count",
                      route="manifests") == 5
        assert "# TYPE registry_http_requests_total counter" in text
        c.delete(session)
        assert metric(c.get("/metrics").text, "registry_upload_sessions_open") == 0


def test_metrics_add_up_every_worker(tmp_path: Path) -> None:
    with RegistryServer(tmp_path / "root", workers=2) as server:
        for _ in range(20):
            with server.client() as fresh:
                assert fresh.get("/v2/").status_code == 200
        deadline = time.monotonic() + 30
        seen = 0.0
        while time.monotonic() < deadline:
            text = httpx.get(server.url + "/metrics").text
            seen = metric(text, "registry_http_requests_total", method="GET", route="base",
                          status="200")
            if seen >= 21:
                break
            time.sleep(0.2)
        assert seen >= 21


def test_health_endpoints(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with RegistryServer(root) as server, server.client() as c:
        for path in ("/healthz", "/debug/health"):
            r = c.get(path)
            assert r.status_code == 200
            assert r.json() == {}
        shutil.rmtree(root / "content")
        r = c.get("/healthz")
        assert r.status_code == 503
        assert "storage" in r.json()


def test_one_log_line_per_request(tmp_path: Path) -> None:
    with RegistryServer(tmp_path / "root") as server, server.client() as c:
        c.get("/v2/")
        c.get("/v2/log/app/tags/list?n=5")
        c.head("/v2/log/app/blobs/" + sha256(b"x"))
    log = server.log()
    assert re.search(r"registry\.access GET /v2/ 200 2 \d+\.\dms", log), log
    assert re.search(r"registry\.access GET /v2/log/app/tags/list\?n=5 404 \d+ \d+\.\dms", log)
    assert re.search(r"registry\.access HEAD /v2/log/app/blobs/sha256:\w+ 404 0 ", log)


def test_settings_precedence(tmp_path: Path) -> None:
    config = tmp_path / "registry.toml"
    config.write_text(f'addr = "127.0.0.1:5001"\nroot = "{tmp_path}/a"\nread_only = true\n'
                      'workers = 3\nlog_level = "debug"\n')
    assert load_settings(config, {}, {}) == Settings(
        addr="127.0.0.1:5001", root=tmp_path / "a", read_only=True, workers=3,
        log_level="debug")
    env = {"REGISTRY_READ_ONLY": "false", "REGISTRY_WORKERS": "2",
           "REGISTRY_ADDR": "127.0.0.1:5002", "REGISTRY_HTTP_ADDR": "ignored"}
    merged = load_settings(config, env, {})
    assert (merged.read_only, merged.workers, merged.port) == (False, 2, 5002)
    assert merged.root == tmp_path / "a"
    flags = {"read_only": True, "addr": "0.0.0.0:5003", "workers": None}
    final = load_settings(config, env, flags)
    assert (final.read_only, final.workers, final.host, final.port) == (True, 2, "0.0.0.0", 5003)
    assert load_settings(None, {"REGISTRY_CONFIG": str(config)}, {}).port == 5001


@pytest.mark.parametrize(("text", "env", "message"), [
    ("addr = 5", {}, "addr must be a string"),
    ("nonsense = 1", {}, "unknown setting 'nonsense'"),
    ("workers = 0", {}, "workers must be at least 1"),
    ("read_only = 'maybe'", {}, "read_only must be true or false"),
    ("[broken", {}, "not valid TOML"),
    ("", {"REGISTRY_WORKERS": "many"}, "REGISTRY_WORKERS: workers must be an integer"),
    ("", {"REGISTRY_ADDR": "nowhere"}, "HOST:PORT"),
    ("log_level = 'loud'", {}, "log_level must be one of"),
])
def test_bad_settings_are_named(tmp_path: Path, text: str, env: dict[str, str],
                                message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(config, env, {})


def test_precedence_in_a_running_server(tmp_path: Path) -> None:
    file_port, env_port, flag_port = free_port(), free_port(), free_port()
    config = tmp_path / "registry.toml"
    config.write_text(f'addr = "127.0.0.1:{file_port}"\nroot = "{tmp_path}/root"\n'
                      "read_only = true\nworkers = 1\n")
    with RegistryServer(None, port=file_port, pass_addr=False,
                        args=["--config", str(config)]) as server, server.client() as c:
        assert c.post("/v2/p/app/blobs/uploads/").status_code == 405
    env = {"REGISTRY_READ_ONLY": "0", "REGISTRY_ADDR": f"127.0.0.1:{env_port}"}
    with RegistryServer(None, port=env_port, pass_addr=False, env=env,
                        args=["--config", str(config)]) as server, server.client() as c:
        assert c.post("/v2/p/app/blobs/uploads/").status_code == 202
    with RegistryServer(None, port=flag_port, env=env,
                        args=["--config", str(config), "--read-only"]) as server, \
            server.client() as c:
        assert c.post("/v2/p/app/blobs/uploads/").status_code == 405
    assert (tmp_path / "root" / "metadata.db").exists()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "registry.cli", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)


def test_bad_configuration_exits_with_a_message(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("workers = -1\n")
    proc = run_cli("serve", "--config", str(config))
    assert proc.returncode == 2
    assert "workers must be at least 1" in proc.stderr
    assert "Traceback" not in proc.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli("serve", "--root", str(tmp_path), "--addr", f"127.0.0.1:{port}",
                       "--workers", "1")
    assert proc.returncode != 0
    assert "address already in use" in proc.stderr.lower()
    assert "Traceback" not in proc.stderr
    env_proc = subprocess.run(
        [sys.executable, "-m", "registry.cli", "serve", "--root", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        env={"REGISTRY_AUTHORIZER": "no.such.module:factory", "PATH": "/usr/bin"})
    assert env_proc.returncode == 2
    assert "cannot be loaded" in env_proc.stderr


def test_gc_subcommand_runs_on_the_registry_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with RegistryServer(root) as server, server.client() as c:
        Api(c).image("gc/app", "v1")
    proc = run_cli("gc", "--root", str(root))
    assert proc.returncode == 0, proc.stderr
