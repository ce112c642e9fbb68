"""Resource limits applied by the sandbox in real cgroups of this host (cgroup v1 here and
in CI): memory and the OOM killer, a bounded fork bomb under the process limit, CPU values,
ulimits, /dev/shm, and the run's cgroup gone afterwards, also after a failure or a cancel."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.errors import LimitError
from builder.executor import NamespaceExecutor, RunResult, RunSpec
from builder.executor.cgroups import CGROUP_ROOT, PARENT, run_cgroup
from builder.limits import Limits, Ulimit, online_cpus
from layerstore.mountinfo import mountinfo

PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
MIB = 1024 * 1024
#: Allocates and touches 256 MiB in one buffer.
HOG = "dd if=/dev/zero of=/dev/null bs=256M count=1"
#: Waits (bounded) until the test creates /tmp/go in the rootfs.
WAIT = "echo READY; i=0; while [ ! -e /tmp/go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done"


@pytest.fixture
def rootfs(busybox_rootfs: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, dest, symlinks=True)
    (dest / "tmp").mkdir(exist_ok=True)
    return dest


def unified() -> bool:
    return any(m.fstype == "cgroup2" and m.mount_point == str(CGROUP_ROOT)
               for m in mountinfo())


def run(rootfs: Path, script: str, limits: Limits,
        on_output: Callable[[bytes], None] | None = None,
        cancel: threading.Event | None = None) -> tuple[RunResult, str]:
    chunks: list[bytes] = []

    def output(data: bytes) -> None:
        chunks.append(data)
        if on_output is not None:
            on_output(b"".join(chunks))

    spec = RunSpec(("sh", "-c", script), (PATH,), limits=limits)
    result = NamespaceExecutor(output=output, timeout=120, cancel=cancel).run(spec, rootfs)
    return result, b"".join(chunks).decode(errors="replace")


def cgroup_dirs(text: str) -> dict[str, Path]:
    """The host directories of the cgroups a run printed (``cat /proc/self/cgroup``) that
    are pybuild's, by controller (``""`` for cgroup v2)."""
    dirs = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or f"/{PARENT}/" not in parts[2]:
            continue
        controller = parts[1]
        base = CGROUP_ROOT if not controller else CGROUP_ROOT / controller
        dirs[controller] = base / parts[2].lstrip("/")
    return dirs


def read(dirs: dict[str, Path], controller: str, v1: str, v2: str) -> str:
    if "" in dirs:
        return (dirs[""] / v2).read_text().strip()
    return (dirs[controller] / v1).read_text().strip()


def sleepers(seconds: str) -> list[int]:
    """PIDs of ``sleep SECONDS`` processes on the host."""
    found = []
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError):
            if entry.isdigit() and Path(f"/proc/{entry}/cmdline").read_bytes() == (
                    b"sleep\0" + seconds.encode() + b"\0"):
                found.append(int(entry))
    return found


def when_ready(rootfs: Path, action: Callable[[str], None]) -> Callable[[bytes], None]:
    """An output callback that runs ``action`` on the output once the run says READY, then
    lets it go on."""
    done = []

    def callback(seen: bytes) -> None:
        if b"READY" in seen and not done:
            done.append(True)
            try:
                action(seen.decode())
            finally:
                (rootfs / "tmp/go").touch()

    return callback


def test_a_memory_hog_is_killed_and_the_error_names_the_limit(rootfs: Path) -> None:
    result, out = run(rootfs, f"cat /proc/self/cgroup; {HOG}", Limits(memory=64 * MIB))
    assert result.exit_code == 137
    assert result.stopped_by == ("was killed by the kernel's OOM killer: it used up its memory "
                                 "limit of 64MiB (--memory 64m)")
    dirs = cgroup_dirs(out)
    assert set(dirs) == ({""} if unified() else {"memory"})
    assert not any(d.exists() for d in dirs.values())


def test_without_a_limit_the_hog_runs_and_no_cgroup_is_made(rootfs: Path) -> None:
    result, out = run(rootfs, f"cat /proc/self/cgroup; {HOG}", Limits(shm_size=8 * MIB))
    assert (result.exit_code, result.stopped_by) == (0, None)
    assert cgroup_dirs(out) == {}


def test_a_bounded_fork_bomb_is_contained_by_the_pids_limit(rootfs: Path) -> None:
    script = ("cat /proc/self/cgroup; i=0; while [ $i -lt 100 ]; do sleep 3517 & i=$((i+1)); "
              "done; wait")
    result, out = run(rootfs, script, Limits(pids_limit=32))
    assert result.exit_code != 0
    assert "can't fork" in out
    assert result.stopped_by is not None
    assert result.stopped_by.startswith("reached its limit of 32 processes (--pids-limit 32): ")
    assert sleepers("3517") == []  # the sleeps did not outlive the run
    dirs = cgroup_dirs(out)
    assert dirs and not any(d.exists() for d in dirs.values())


def test_cpu_values_land_in_the_cgroup_files(rootfs: Path) -> None:
    seen: dict[str, str] = {}

    def look(out: str) -> None:
        dirs = cgroup_dirs(out)
        seen["quota"] = read(dirs, "cpu", "cpu.cfs_quota_us", "cpu.max")
        seen["period"] = read(dirs, "cpu", "cpu.cfs_period_us", "cpu.max")
        seen["shares"] = read(dirs, "cpu", "cpu.shares", "cpu.weight")
        seen["cpuset"] = read(dirs, "cpuset", "cpuset.cpus", "cpuset.cpus")
        seen["pids"] = read(dirs, "pids", "pids.max", "pids.max")
        seen["memory"] = read(dirs, "memory", "memory.limit_in_bytes", "memory.max")
        seen["procs"] = read(dirs, "cpu", "cgroup.procs", "cgroup.procs")
        seen["dirs"] = " ".join(str(d) for d in dirs.values())

    limits = Limits(cpus=500_000_000, cpu_shares=512, cpuset_cpus="0", pids_limit=64,
                    memory=256 * MIB)
    result, _ = run(rootfs, f"cat /proc/self/cgroup; {WAIT}", limits,
                    when_ready(rootfs, look))
    assert result.exit_code == 0
    if unified():
        assert seen["quota"] == "50000 100000"
        assert seen["shares"] == str(1 + (510 * 9999) // 262142)
    else:
        assert (seen["quota"], seen["period"], seen["shares"]) == ("50000", "100000", "512")
    assert (seen["cpuset"], seen["pids"], seen["memory"]) == ("0", "64", str(256 * MIB))
    assert len(seen["procs"].split()) >= 1  # the command (not the sandbox's init) is inside
    assert not any(Path(d).exists() for d in seen["dirs"].split())


def test_ulimits_and_shm_size_are_seen_inside(rootfs: Path) -> None:
    limits = Limits(ulimits=(Ulimit("nofile", 100, 200), Ulimit("nproc", 500, 500)),
                    shm_size=16 * MIB)
    result, out = run(rootfs, "ulimit -n; ulimit -Hn; ulimit -u; df -k /dev/shm | tail -1",
                      limits)
    assert result.exit_code == 0
    lines = out.splitlines()
    assert lines[:3] == ["100", "200", "500"]
    assert lines[3].split()[1] == str(16 * 1024)
    result, out = run(rootfs, "df -k /dev/shm | tail -1", Limits())
    assert out.split()[1] == str(64 * 1024)  # docker's default


def test_a_ulimit_the_kernel_refuses_fails_the_setup(rootfs: Path) -> None:
    nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    result, out = run(rootfs, "echo ran", Limits(ulimits=(Ulimit("nofile", 10, nr_open + 1),)))
    assert result.exit_code == 125
    assert out == (f"pybuild: --ulimit nofile=10:{nr_open + 1}: the kernel refused it (not "
                   "allowed to raise maximum limit)\n")


def test_a_cancelled_run_leaves_no_cgroup_and_no_process(rootfs: Path) -> None:
    cancel = threading.Event()
    seen: dict[str, dict[str, Path]] = {}

    def stop(out: str) -> None:
        seen["dirs"] = cgroup_dirs(out)
        cancel.set()

    result, _ = run(rootfs, f"cat /proc/self/cgroup; sleep 3518 & {WAIT}; wait",
                    Limits(memory=64 * MIB, pids_limit=10), when_ready(rootfs, stop), cancel)
    assert result.exit_code == 137 and result.stopped_by is None
    assert sleepers("3518") == []
    assert seen["dirs"] and not any(d.exists() for d in seen["dirs"].values())


def test_a_failed_run_removes_its_cgroup(rootfs: Path) -> None:
    result, out = run(rootfs, "cat /proc/self/cgroup; exit 3", Limits(pids_limit=5))
    assert (result.exit_code, result.stopped_by) == (3, None)
    dirs = cgroup_dirs(out)
    assert dirs and not any(d.exists() for d in dirs.values())


def test_stale_cgroups_of_dead_builds_are_swept(rootfs: Path) -> None:
    parent = (CGROUP_ROOT if unified() else CGROUP_ROOT / "pids") / PARENT
    parent.mkdir(exist_ok=True)
    stale, fresh = parent / "999999999-dead", parent / "999999998-young"
    stale.mkdir()
    fresh.mkdir()
    try:
        old = time.time() - 3600
        os.utime(stale, (old, old))
        result, _ = run(rootfs, "true", Limits(pids_limit=5))
        assert result.exit_code == 0
        assert not stale.exists()
        assert fresh.exists()  # too young to be sure it is a leftover
    finally:
        for d in (stale, fresh):
            if d.exists():
                d.rmdir()


def test_v1_refuses_limits_to_a_non_root_user() -> None:
    if unified():
        pytest.fail("this test checks the cgroup v1 host this project runs on")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            os.setgid(65534)
            os.setuid(65534)
            try:
                with run_cgroup(Limits(memory=64 * MIB)):
                    message = "made a cgroup"
            except LimitError as exc:
                message = str(exc)
            os.write(write_fd, message.encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        message = f.read().decode()
    os.waitpid(pid, 0)
    assert message.startswith(f"--memory 64m: cannot create the cgroup "
                              f"{CGROUP_ROOT}/memory/{PARENT}")
    assert message.endswith("Permission denied: on a cgroup v1 host only root can set "
                            "resource limits (build as root, or on a cgroup v2 host with "
                            "delegation)")


def test_a_process_killed_by_the_oom_killer_is_named_when_the_run_fails(rootfs: Path) -> None:
    result, _ = run(rootfs, f"{HOG}; exit 1", Limits(memory=64 * MIB, memory_swap=64 * MIB))
    assert result.exit_code == 1
    assert result.stopped_by == ("failed after the kernel's OOM killer killed one of its "
                                 "processes: it used up its memory limit of 64MiB (--memory "
                                 "64m, --memory-swap 64m)")
    result, _ = run(rootfs, f"{HOG}; true", Limits(memory=64 * MIB))
    assert (result.exit_code, result.stopped_by) == (0, None)  # docker's exit status rules


def test_a_limit_the_kernel_refuses_fails_the_run_and_removes_what_was_made(
        rootfs: Path) -> None:
    offline = max(online_cpus()) + 1  # past the checks of the flag, as a changed host would
    before = run_cgroups()
    with pytest.raises(LimitError) as caught:
        run(rootfs, "echo ran", Limits(memory=64 * MIB, cpuset_cpus=str(offline)))
    message = str(caught.value)
    assert message.startswith(f"--cpuset-cpus {offline}: cannot write '{offline}' to ")
    assert re.search(r"/cpuset\.cpus: (Invalid argument|Numerical result out of range)$",
                     message)
    assert run_cgroups() == before


def run_cgroups() -> set[Path]:
    """The run cgroups that exist now, in every hierarchy."""
    return {d for d in CGROUP_ROOT.glob(f"*/{PARENT}/*") if d.is_dir()} | {
        d for d in CGROUP_ROOT.glob(f"{PARENT}/*") if d.is_dir()}
