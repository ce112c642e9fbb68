"""Ctrl-C during a RUN step: the build stops, and every mount and snapshot it made is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from builder.store import BuildStore
from tests.builder.test_build import ours


def test_ctrl_c_cleans_up(store_root: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo started && sleep 60\n")
    (tmp_path / "tmp").mkdir()
    before = ours(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "builder.cli", "--root", str(store_root), "build",
         "--progress=plain", "-t", "int:1", str(ctx)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "TMPDIR": str(tmp_path / "tmp")})
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + 60
    while b"started" not in seen and time.monotonic() < deadline:
        seen += proc.stdout.read1(4096)
    assert b"started" in seen, seen
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert b"Traceback" not in seen + out
    assert ours(tmp_path) == before
    with BuildStore.open(store_root) as store:
        assert {i.kind.value for i in store.snapshots.walk()} <= {"committed"}
        assert not list(store.tmp.iterdir())
        assert [r.name for r in store.images.list()] == ["busybox:latest"]
