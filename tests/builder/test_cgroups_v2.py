"""The cgroup v2 writer. This host runs cgroup v1 (its memory, cpu, cpuset and pids
controllers are bound to v1 hierarchies), so: against a real cgroup2 hierarchy mounted in a
private mount namespace (the kernel lets root do that), what can be checked without those
controllers — the run cgroup's life, joining, removal by cgroup.kill, delegation to a
non-root user, the error for a missing controller; and against a directory laid out like
cgroupfs, the files the limits are written to and the OOM / process-limit verdicts."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from builder.errors import LimitError
from builder.executor.cgroups import (
    PARENT,
    RunCgroup,
    V2Writer,
    cpu_weight,
    delegated_base,
    own_cgroup_v2,
)
from builder.limits import Limits
from layerstore import syscalls
from layerstore.syscalls import MS_PRIVATE, MS_REC

MIB = 1024 * 1024
CLONE_NEWNS = 0x00020000
NOBODY = 65534
OURS = ("memory", "cpu", "cpuset", "pids")


def in_cgroup2(check: Callable[[Path], Any]) -> Any:
    """Run ``check(mount point)`` in a forked child with a private mount namespace and a
    cgroup2 hierarchy mounted there; return what it returned (JSON) or fail with its error."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        answer: dict[str, Any]
        try:
            os.close(read_fd)
            syscalls.unshare(CLONE_NEWNS)
            syscalls.mount(None, "/", None, MS_REC | MS_PRIVATE)
            mount = Path(tempfile.mkdtemp(prefix="cgroups-v2-"))
            syscalls.mount("none", mount, "cgroup2", 0)
            try:
                answer = {"ok": check(mount)}
            finally:
                syscalls.umount(mount)
                mount.rmdir()
        except BaseException as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            with contextlib.suppress(BaseException):
                os.write(write_fd, json.dumps(answer).encode())
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    answer = json.loads(data or b'{"error": "the child died"}')
    if "error" in answer:
        pytest.fail(answer["error"])
    return answer["ok"]


def scratch_cgroup(mount: Path) -> Path:
    """A cgroup of the test's own below the hierarchy's root."""
    base = mount / f"cgroups-test-{secrets.token_hex(4)}"
    base.mkdir()
    return base


def remove_tree(path: Path) -> None:
    """rmdir a cgroup and its descendants, deepest first."""
    for child in [p for p in path.iterdir() if p.is_dir()]:
        remove_tree(child)
    path.rmdir()


def test_a_missing_v2_controller_is_an_error_naming_flag_and_controller() -> None:
    def check(mount: Path) -> dict[str, str]:
        available = (mount / "cgroup.controllers").read_text().split()
        results = {}
        asks = {"memory": Limits(memory=64 * MIB), "cpu": Limits(cpus=500_000_000),
                "cpuset": Limits(cpuset_cpus="0"), "pids": Limits(pids_limit=5)}
        for controller in OURS:
            if controller in available:
                continue
            writer = V2Writer(mount, asks[controller], "t")
            try:
                writer.create()
                results[controller] = "created"
            except LimitError as exc:
                results[controller] = str(exc)
            assert not (mount / PARENT / "t").exists()
        return {"available": " ".join(sorted(available)) or "none", **results}

    found = in_cgroup2(check)
    available = found.pop("available")
    flags = {"memory": "--memory 64m", "cpu": "--cpus 0.5", "cpuset": "--cpuset-cpus 0",
             "pids": "--pids-limit 5"}
    assert found, "every controller is on cgroup v2: this host is not the v1 host it was"
    for controller, message in found.items():
        assert message.startswith(f"{flags[controller]}: the cgroup v2 {controller} "
                                  f"controller is not available in ")
        assert message.endswith(f"(cgroup.controllers: {available}): enable it in the "
                                "parent's cgroup.subtree_control (systemd: Delegate=yes)")


def test_a_v2_run_cgroup_is_made_joined_and_removed_with_its_processes() -> None:
    def check(mount: Path) -> dict[str, Any]:
        base = scratch_cgroup(mount)
        try:
            writer = V2Writer(base, Limits(), "run-1")
            writer.create()
            made = writer.path.is_dir() and writer.path.parent.name == PARENT
            fd = os.open(writer.procs_files()[0], os.O_WRONLY)
            child = os.fork()
            if child == 0:
                os.write(fd, b"0")
                os.execv("/bin/sleep", ["sleep", "600"])
            os.close(fd)
            deadline = time.monotonic() + 10
            while not (writer.path / "cgroup.procs").read_text().split():
                if time.monotonic() >= deadline:
                    pytest.fail("the forked process never joined the cgroup")
                time.sleep(0.01)
            inside = (writer.path / "cgroup.procs").read_text().split()
            cgroup = Path(f"/proc/{child}/cgroup").read_text()
            writer.remove()
            _, status = os.waitpid(child, 0)
            return {"made": made, "inside": inside, "child": child, "cgroup": cgroup,
                    "gone": not writer.path.exists(), "killed": os.WIFSIGNALED(status)
                    and os.WTERMSIG(status) == signal.SIGKILL,
                    "events": [writer.events().oom_kills, writer.events().forks_refused],
                    "base": base.name}
        finally:
            remove_tree(base)

    found = in_cgroup2(check)
    assert found["made"] and found["gone"] and found["killed"]
    assert found["inside"] == [str(found["child"])]
    assert own_cgroup_v2(found["cgroup"]) == f"/{found['base']}/{PARENT}/run-1"
    assert found["events"] == [0, 0]


def test_delegation_to_a_user_is_found_and_used() -> None:
    def check(mount: Path) -> dict[str, Any]:
        base = scratch_cgroup(mount)
        try:
            delegated = base / "user.service"
            inner = delegated / "app.scope"
            for d in (delegated, inner):
                d.mkdir()
                for name in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
                    os.chown(d / name, NOBODY, NOBODY)
            read_fd, write_fd = os.pipe()
            child = os.fork()
            if child == 0:
                answer: dict[str, Any] = {}
                try:
                    (inner / "cgroup.procs").write_text("0")
                    os.setgid(NOBODY)
                    os.setuid(NOBODY)
                    own = own_cgroup_v2(Path("/proc/self/cgroup").read_text())
                    answer["own"] = own
                    found = delegated_base(mount, own, NOBODY)
                    answer["base"] = str(found.relative_to(mount))
                    try:
                        delegated_base(mount, f"/{base.name}", NOBODY)
                    except LimitError as exc:
                        answer["refused"] = str(exc)
                    writer = V2Writer(found, Limits(), "run-2")
                    writer.create()
                    with open(writer.procs_files()[0], "w") as procs:
                        procs.write("0")
                    answer["joined"] = own_cgroup_v2(Path("/proc/self/cgroup").read_text())
                except BaseException as exc:
                    answer["error"] = f"{type(exc).__name__}: {exc}"
                os.write(write_fd, json.dumps(answer).encode())
                os._exit(0)
            os.close(write_fd)
            with os.fdopen(read_fd, "rb") as f:
                answer = json.loads(f.read())
            os.waitpid(child, 0)
            answer["name"] = base.name
            return answer
        finally:
            remove_tree(base)

    found = in_cgroup2(check)
    assert "error" not in found, found["error"]
    name = found["name"]
    assert found["own"] == f"/{name}/user.service/app.scope"
    assert found["base"] == f"{name}/user.service"
    assert found["joined"] == f"/{name}/user.service/{PARENT}/run-2"
    assert found["refused"] == (
        f"resource limits need a cgroup delegated to uid {NOBODY}, and /{name} is not one: run "
        "pybuild in a delegated systemd scope (systemd-run --user --scope -p Delegate=yes "
        "pybuild ...), with cgroup v2 delegation enabled for user@.service")


def cgroupfs(tmp_path: Path, controllers: str = "cpuset cpu io memory hugetlb pids") -> Path:
    """A directory laid out like a cgroup v2 hierarchy whose ``pybuild`` cgroup exists."""
    base = tmp_path / "cgroup"
    for d in (base, base / PARENT):
        d.mkdir()
        for name in ("cgroup.procs", "cgroup.subtree_control"):
            (d / name).write_text("")
        (d / "cgroup.controllers").write_text(controllers + "\n")
    return base


def kernel_files(path: Path, *names: str) -> None:
    """What the kernel puts into a new cgroup (the files the writer writes)."""
    for name in ("cgroup.procs", "cgroup.kill", "memory.max", "cpu.max", "cpu.weight",
                 "cpuset.cpus", "pids.max", *names):
        (path / name).write_text("")


def test_v2_writer_writes_the_limits_into_the_v2_files(tmp_path: Path) -> None:
    base = cgroupfs(tmp_path)
    limits = Limits(memory=64 * MIB, cpus=1_500_000_000, cpu_shares=512, cpuset_cpus="0",
                    pids_limit=32)
    writer = V2Writer(base, limits, "run-3")
    writer.create()
    assert writer.path == base / PARENT / "run-3" and writer.path.is_dir()
    kernel_files(writer.path, "memory.swap.max")
    writer.apply(limits)
    files = {p.name: p.read_text() for p in writer.path.iterdir()}
    assert files["memory.max"] == str(64 * MIB)
    assert files["memory.swap.max"] == str(64 * MIB)  # docker: swap as much as memory
    assert files["cpu.max"] == "150000 100000"
    assert files["cpu.weight"] == str(cpu_weight(512)) == "20"
    assert (cpu_weight(2), cpu_weight(1024), cpu_weight(262144)) == (1, 39, 10000)
    assert files["cpuset.cpus"] == "0" and files["pids.max"] == "32"
    assert writer.procs_files() == [writer.path / "cgroup.procs"]


@pytest.mark.parametrize(("swap", "expected"), [(-1, "max"), (96 * MIB, str(32 * MIB))])
def test_v2_swap_is_memory_swap_minus_memory(tmp_path: Path, swap: int, expected: str) -> None:
    base = cgroupfs(tmp_path)
    limits = Limits(memory=64 * MIB, memory_swap=swap)
    writer = V2Writer(base, limits, "run-4")
    writer.create()
    kernel_files(writer.path, "memory.swap.max")
    writer.apply(limits)
    assert (writer.path / "memory.swap.max").read_text() == expected


def test_v2_without_swap_accounting_refuses_an_explicit_swap_limit(tmp_path: Path) -> None:
    base = cgroupfs(tmp_path)
    limits = Limits(memory=64 * MIB, memory_swap=96 * MIB)
    writer = V2Writer(base, limits, "run-5")
    writer.create()
    kernel_files(writer.path)
    with pytest.raises(LimitError, match=r"^--memory-swap 96m: this kernel does not account "
                                         r"swap in cgroups \(memory.swap.max is missing\)$"):
        writer.apply(limits)
    writer.apply(Limits(memory=64 * MIB))  # docker's default swap is skipped, not refused


def test_v2_missing_controller_on_a_laid_out_tree(tmp_path: Path) -> None:
    base = cgroupfs(tmp_path, "cpu io")
    with pytest.raises(LimitError) as caught:
        V2Writer(base, Limits(pids_limit=3), "run-6").create()
    assert str(caught.value) == (
        f"--pids-limit 3: the cgroup v2 pids controller is not available in {base} "
        "(cgroup.controllers: cpu io): enable it in the parent's cgroup.subtree_control "
        "(systemd: Delegate=yes)")
    assert not (base / PARENT / "run-6").exists()


def test_v2_events_give_the_verdicts(tmp_path: Path) -> None:
    base = cgroupfs(tmp_path)
    limits = Limits(memory=64 * MIB, memory_swap=-1, pids_limit=32)
    writer = V2Writer(base, limits, "run-7")
    writer.create()
    (writer.path / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n"
                                               "oom_group_kill 0\n")
    (writer.path / "pids.events").write_text("max 0\n")
    run = RunCgroup(writer, limits, ())
    assert run.verdict(0) is None
    assert run.verdict(137) == ("was killed by the kernel's OOM killer: it used up its memory "
                                "limit of 64MiB (--memory 64m, --memory-swap -1)")
    (writer.path / "memory.events").write_text("oom_kill 0\n")
    (writer.path / "pids.events").write_text("max 7\n")
    assert run.verdict(2) == ("reached its limit of 32 processes (--pids-limit 32): 7 fork(s) "
                              "refused")
    (writer.path / "pids.events").write_text("max 0\n")
    assert run.verdict(1) is None
