"""Resource limits through the commands: ``pybuild build`` (every RUN step) and
``pybuild run``, flags and config-file defaults, side by side with ``docker run`` on the same
memory hog."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from builder.executor.cgroups import CGROUP_ROOT, PARENT
from builder.store import BuildStore
from tests.builder.bases import BUSYBOX, BaseImages
from tests.builder.examples import pybuild_command
from tests.builder.test_build import build
from tests.builder.test_commands import BASE, pybuild
from tests.peers import docker

HOG = "dd if=/dev/zero of=/dev/null bs=256M count=1"
OOM = ("was killed by the kernel's OOM killer: it used up its memory limit of 64MiB "
       "({flag}) (exit code 137)")


def run_cgroups() -> set[Path]:
    """The run cgroups that exist now, in every hierarchy."""
    return {d for d in CGROUP_ROOT.glob(f"*/{PARENT}/*") if d.is_dir()} | {
        d for d in CGROUP_ROOT.glob(f"{PARENT}/*") if d.is_dir()}


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The error line of a failed build (the progress goes to stderr too)."""
    return next(line for line in capsys.readouterr().err.splitlines()
                if line.startswith("error: "))


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the builder config file is read from (missing until a test writes it)."""
    path = tmp_path / "pybuild.toml"
    monkeypatch.setenv("PYBUILD_CONFIG", str(path))
    return path


def test_an_oom_killed_run_names_the_line_the_limit_and_the_flag(
        store_root: Path, tmp_path: Path, config: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    before = run_cgroups()
    dockerfile = f"FROM busybox\nRUN echo first\nRUN {HOG}\n"
    assert build(store_root, ctx, dockerfile, "--memory", "64m") == 1
    assert error_line(capsys) == (f"error: Dockerfile:3: RUN failed: process '{HOG}' "
                                  + OOM.format(flag="--memory 64m"))
    config.write_text('[limits]\nmemory = "64m"\n')
    assert build(store_root, ctx, dockerfile) == 1
    assert error_line(capsys).endswith(OOM.format(flag=f"memory = '64m' in [limits] of {config}"))
    assert build(store_root, ctx, dockerfile, "--memory", "1g", "-t", "hog:1") == 0
    assert run_cgroups() == before


def test_a_fork_bomb_build_fails_at_the_pids_limit(store_root: Path, tmp_path: Path,
                                                   config: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    bomb = "i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done; wait"
    assert build(store_root, ctx, f"FROM busybox\nRUN {bomb}\n", "--pids-limit", "32") == 1
    line = error_line(capsys)
    assert line.startswith(f"error: Dockerfile:2: RUN failed: process '{bomb}' "
                           "reached its limit of 32 processes (--pids-limit 32): ")


def test_limits_reach_every_run_and_leave_the_cache_keys_alone(
        store_root: Path, tmp_path: Path, config: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    dockerfile = ("FROM busybox\n"
                  'RUN test "$(ulimit -n) $(ulimit -Hn)" = "100 200"\n'
                  "RUN df -k /dev/shm | tail -1 | awk '{print $2}' > /shm-kb\n"
                  "RUN grep -E '^[0-9]+:(memory|pids):/pybuild/' /proc/self/cgroup | wc -l"
                  " > /cgroups\n")
    config.write_text('[limits]\nulimit = ["nofile=100:200"]\nshm-size = "32m"\n')
    assert build(store_root, ctx, dockerfile, "--memory", "512m", "--pids-limit", "100",
                 "-t", "limited:1") == 0
    config.unlink()
    assert build(store_root, ctx, dockerfile, "--no-cache", "-t", "plain:1") == 1  # no ulimit
    config.write_text('[limits]\nulimit = ["nofile=100:200"]\n')
    assert build(store_root, ctx, dockerfile, "-t", "cached:1") == 0
    with BuildStore.open(store_root) as store:
        limited = store.images.get("limited:1").target
        assert store.images.get("cached:1").target == limited  # every RUN came from the cache
    assert subprocess.run(
        [*pybuild_command(), "--root", str(store_root), "run", "limited:1", "sh", "-c",
         "cat /shm-kb /cgroups"], capture_output=True, timeout=60).stdout == b"32768\n2\n"


def test_pybuild_run_applies_the_limits(root: Path, config: Path,
                                        capfd: pytest.CaptureFixture[str]) -> None:
    assert pybuild(root, "run", "--ulimit", "nofile=100:200", "--shm-size", "1g",
                   "--cpuset-cpus", "0", "--cpus", "0.5", BASE, "sh", "-c",
                   "ulimit -n; df -k /dev/shm | tail -1; grep -c pybuild /proc/self/cgroup"
                   ) == 0
    out = capfd.readouterr().out.splitlines()
    assert out[0] == "100" and out[1].split()[1] == str(1024 * 1024) and out[2] == "2"
    assert pybuild(root, "run", "-m", "64m", BASE, "sh", "-c", HOG) == 137
    assert capfd.readouterr().err == ("pybuild: the container "
                                      + OOM.format(flag="--memory 64m") + "\n")


def test_the_same_hog_is_killed_by_docker_and_by_pybuild(docker_bases: BaseImages,
                                                         pybuild_root: Path) -> None:
    name = f"cgroups-oom-{uuid.uuid4().hex[:8]}"
    ran = docker("run", "--name", name, "--memory", "64m", BUSYBOX, "sh", "-c", HOG,
                 check=False, timeout=120)
    try:
        state = json.loads(docker("inspect", "--format", "{{json .State}}", name).stdout)
    finally:
        docker("rm", "-f", name, check=False)
    assert ran.returncode == 137 and state["OOMKilled"] is True
    ours = subprocess.run([*pybuild_command(), "--root", str(pybuild_root), "run", "--rm",
                           "--memory", "64m", BUSYBOX, "sh", "-c", HOG],
                          capture_output=True, timeout=120)
    assert ours.returncode == 137
    assert ours.stderr.decode() == ("pybuild: the container " + OOM.format(flag="--memory 64m")
                                    + "\n")


def test_ctrl_c_during_a_limited_run_removes_its_cgroups(store_root: Path, tmp_path: Path,
                                                         config: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nRUN grep pybuild /proc/self/cgroup; echo $((6*7))-ready && sleep 60\n")
    before = run_cgroups()
    proc = subprocess.Popen(
        [*pybuild_command(), "--root", str(store_root), "build", "--progress=plain",
         "--memory", "128m", "--pids-limit", "50", str(ctx)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + 60
    while b"42-ready" not in seen and time.monotonic() < deadline:
        seen += proc.stdout.read1(4096)
    assert b"42-ready" in seen, seen
    during = run_cgroups() - before
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and b"Traceback" not in seen + out
    assert {d.parent.parent.name for d in during} == {"memory", "pids"}
    assert len({d.name for d in during}) == 1
    assert not any(d.exists() for d in during)
