"""The throwaway engines: ``python -m registry.testing.engines up|down`` starts a real
PostgreSQL and a real Ceph RGW, prints their settings, and stops them by PID."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from registry.testing.deadline import time_limit
from registry.testing.engineprocs import _alive
from registry.testing.engines import PG_BIN, recorded
from tests.peers import require

TIMEOUT = 240


@pytest.fixture(autouse=True)
def deadline() -> Iterator[None]:
    """Fail a case that runs longer than TIMEOUT seconds instead of hanging the session."""
    with time_limit(TIMEOUT):
        yield


def _engines(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "registry.testing.engines", *args],
                          capture_output=True, text=True, timeout=TIMEOUT)


def _signed(method: str, url: str, path: str, key: str, secret: str,
            body: bytes | None = None) -> httpx.Response:
    date = email.utils.formatdate(usegmt=True)
    signature = base64.b64encode(hmac.new(secret.encode(), f"{method}\n\n\n{date}\n{path}"
                                          .encode(), hashlib.sha1).digest()).decode()
    return httpx.request(method, url + path, content=body, timeout=30,
                         headers={"Date": date, "Authorization": f"AWS {key}:{signature}"})


def test_up_prints_settings_and_down_stops_everything(tmp_path: Path) -> None:
    for tool in ("radosgw", "ceph-mon", "ceph-osd", "ceph-mgr", str(PG_BIN / "initdb")):
        require(tool)
    directory = tmp_path / "engines"
    started = _engines("up", "--dir", str(directory))
    try:
        assert started.returncode == 0, started.stderr
        settings = dict(line.split("=", 1) for line in started.stdout.splitlines())
        assert set(settings) == {
            "REGISTRY_METADATA_URL", "REGISTRY_STORAGE", "REGISTRY_S3_ENDPOINT",
            "REGISTRY_S3_BUCKET", "REGISTRY_S3_REGION", "REGISTRY_S3_PATH_STYLE",
            "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        assert settings["REGISTRY_STORAGE"] == "s3"
        assert settings["REGISTRY_S3_REGION"] == "us-east-1"
        assert (directory / "engines.env").read_text() == started.stdout
        with psycopg.connect(settings["REGISTRY_METADATA_URL"], connect_timeout=10) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("registry",)
            assert conn.execute("SHOW lc_collate").fetchone() == ("C",)
        endpoint, bucket = settings["REGISTRY_S3_ENDPOINT"], settings["REGISTRY_S3_BUCKET"]
        assert endpoint.startswith("http://127.0.0.1:")
        keys = settings["AWS_ACCESS_KEY_ID"], settings["AWS_SECRET_ACCESS_KEY"]
        put = _signed("PUT", endpoint, f"/{bucket}/object", *keys, body=b"payload")
        assert put.status_code == 200, put.text
        assert _signed("GET", endpoint, f"/{bucket}/object", *keys).content == b"payload"
        assert _signed("GET", endpoint, f"/{bucket}/object", "WRONGKEY", keys[1]
                       ).status_code == 403
        engines = recorded(directory)
        assert engines is not None and engines.postgres and engines.rgw
        pids = [engines.postgres.pid, *engines.rgw.pids]
        assert all(_alive(pid) for pid in pids)
        again = _engines("up", "--dir", str(directory))
        assert again.returncode == 1 and "down --dir" in again.stderr
    finally:
        stopped = _engines("down", "--dir", str(directory))
    assert stopped.returncode == 0, stopped.stderr
    assert not any(_alive(pid) for pid in pids)
    assert recorded(directory) is None
    assert _engines("down", "--dir", str(directory)).stderr.startswith("nothing recorded")


def test_postgres_only_from_python_in_a_private_directory(tmp_path: Path) -> None:
    from registry.testing.engines import running

    directory = tmp_path / "private"
    directory.mkdir(mode=0o700)
    os.chmod(tmp_path, 0o700)
    with running(directory, rgw=False) as engines:
        assert engines.rgw is None and engines.postgres is not None
        assert set(engines.settings()) == {"REGISTRY_METADATA_URL"}
        url = engines.postgres.create_database("other_db")
        assert engines.postgres.create_database("other_db") == url
        with psycopg.connect(url, connect_timeout=10) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("other_db",)
        home = Path(engines.postgres.data_dir).parent
        pid = engines.postgres.pid
    assert not _alive(pid)
    assert not home.exists() or home.is_relative_to(directory)
