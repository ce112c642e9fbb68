"""The resource-limit flags and the ``[limits]`` table of the builder config: docker's value
syntax, docker's checks, one-line errors naming the flag or the key."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from builder import limits
from builder.cli import main
from builder.commands.limitflags import add_limit_flags, limits_from
from builder.errors import BuildError
from builder.limits import Limits, Ulimit

MIB = 1024 * 1024


def parse(*argv: str, defaults: Limits | None = None) -> Limits:
    parser = argparse.ArgumentParser()
    add_limit_flags(parser)
    args = parser.parse_args(list(argv))
    if defaults is None:
        return limits_from(args)
    values = {name: getattr(args, f"limit_{name}") for name in limits.FIELDS}
    return limits.from_flags(values, args.limit_ulimit, defaults)


@pytest.mark.parametrize(("text", "size"), [
    ("512m", 512 * MIB), ("1g", 1024 * MIB), ("1.5g", 1536 * MIB), ("100", 100),
    ("64MiB", 64 * MIB), ("10kb", 10240), ("2 M", 2 * MIB), ("1T", 1024 ** 4), (4096, 4096),
])
def test_sizes_read_as_docker_reads_them(text: str | int, size: int) -> None:
    assert limits.parse_size(text, "--memory") == size


def test_every_flag_lands_in_the_limits() -> None:
    got = parse("-m", "64m", "--memory-swap", "128m", "--cpus", "1.5", "-c", "512",
                "--cpuset-cpus", "0", "--pids-limit", "32", "--shm-size", "1g",
                "--ulimit", "nofile=100:200", "--ulimit", "nproc=50", "--ulimit", "nofile=7")
    assert got == Limits(memory=64 * MIB, memory_swap=128 * MIB, cpus=1_500_000_000,
                         cpu_shares=512, cpuset_cpus="0", pids_limit=32, shm_size=1024 * MIB,
                         ulimits=(Ulimit("nofile", 7, 7), Ulimit("nproc", 50, 50)))
    assert got.controllers == ("memory", "cpu", "cpuset", "pids")
    assert parse() == Limits() and Limits().controllers == ()
    assert parse("--ulimit", "nofile=1:2", "--shm-size", "8m").controllers == ()


def test_docker_defaults_and_unlimited_values() -> None:
    assert parse("--memory", "64m").swap_total == 128 * MIB  # docker: twice the memory
    assert parse("--memory", "64m", "--memory-swap", "-1").swap_total == -1
    assert parse("--pids-limit", "-1").pids_limit is None
    assert parse("--pids-limit", "0").pids_limit is None
    assert parse("--cpu-shares", "0").cpu_shares is None
    assert parse("--shm-size", "0").shm_size is None
    assert parse("--ulimit", "core=-1").ulimits == (Ulimit("core", -1, -1),)
    assert parse("--ulimit", "nofile=10:-1").ulimits == (Ulimit("nofile", 10, -1),)


@pytest.mark.parametrize(("argv", "message"), [
    (["--memory", "5m"], "--memory: the minimum memory limit is 6MiB"),
    (["--memory", "lots"], "--memory: invalid size 'lots' (expected a number with an optional "
     "unit b, k, m or g, such as 512m)"),
    (["--memory", "-1"], "--memory: invalid size '-1'"),
    (["--memory", "1x"], "--memory: invalid size '1x'"),
    (["--memory-swap", "1g"], "--memory-swap 1g: set --memory as well when limiting memory "
     "plus swap"),
    (["--memory", "64m", "--memory-swap", "32m"], "--memory-swap 32m: the memory plus swap "
     "limit must be at least the memory limit (--memory 64m)"),
    (["--cpus", "0"], "--cpus: the number of CPUs must be more than 0"),
    (["--cpus", "abc"], "--cpus: 'abc' is not a number of CPUs"),
    (["--cpus", "4096"], f"--cpus: the range of CPUs is from 0.01 to {os.cpu_count()}.00, as "
     f"there are only {os.cpu_count()} CPUs available"),
    (["--cpu-shares", "1"], "--cpu-shares: CPU shares must be between 2 and 262144"),
    (["--cpu-shares", "x"], "--cpu-shares: 'x' is not an integer"),
    (["--cpuset-cpus", "0-4095"], "--cpuset-cpus: requested CPUs are not available - "
     "requested 0-4095, available: "),
    (["--cpuset-cpus", "a"], "--cpuset-cpus: invalid CPU list 'a'"),
    (["--cpuset-cpus", "3-1"], "--cpuset-cpus: invalid CPU list '3-1'"),
    (["--pids-limit", "many"], "--pids-limit: 'many' is not an integer"),
    (["--shm-size", "big"], "--shm-size: invalid size 'big'"),
    (["--ulimit", "nofile"], "--ulimit nofile: invalid ulimit argument (expected "
     "name=soft[:hard])"),
    (["--ulimit", "files=1"], "--ulimit files=1: invalid ulimit type 'files' (expected one of "
     "as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, "
     "rttime, sigpending, stack)"),
    (["--ulimit", "nofile=200:100"], "--ulimit nofile=200:100: ulimit soft limit must be less "
     "than or equal to hard limit: 200 > 100"),
    (["--ulimit", "nofile=-1:100"], "--ulimit nofile=-1:100: ulimit soft limit must be less"),
    (["--ulimit", "nofile=a"], "--ulimit nofile=a: invalid ulimit value (expected integers, -1 "
     "for unlimited)"),
    (["--ulimit", "nofile=-5"], "--ulimit nofile=-5: invalid ulimit value -5"),
])
def test_bad_values_are_one_line_errors_naming_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(BuildError) as caught:
        parse(*argv)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_config_table_gives_defaults_the_flags_override(tmp_path: Path) -> None:
    path = tmp_path / "pybuild.toml"
    table = {"memory": "1g", "memory-swap": -1, "cpus": 1, "cpu-shares": 512,
             "cpuset-cpus": "0", "pids-limit": 100, "shm-size": 16 * MIB,
             "ulimit": ["nofile=10:20", "core=0"]}
    defaults = limits.from_config(table, path)
    assert defaults == Limits(
        memory=1024 * MIB, memory_swap=-1, cpus=1_000_000_000, cpu_shares=512,
        cpuset_cpus="0", pids_limit=100, shm_size=16 * MIB,
        ulimits=(Ulimit("core", 0, 0), Ulimit("nofile", 10, 20)), config=str(path),
        from_config=frozenset({"memory", "memory_swap", "cpus", "cpu_shares", "cpuset_cpus",
                               "pids_limit", "shm_size"}))
    assert defaults.flag("memory") == f"memory = '1g' in [limits] of {path}"
    got = parse("--memory", "64m", "--ulimit", "nofile=1:2", defaults=defaults)
    assert got.memory == 64 * MIB and got.flag("memory") == "--memory 64m"
    assert got.ulimits == (Ulimit("core", 0, 0), Ulimit("nofile", 1, 2))
    assert got.pids_limit == 100 and got.flag("pids_limit").startswith("pids-limit = '100'")
    assert parse(defaults=defaults) == defaults


@pytest.mark.parametrize(("table", "message"), [
    ({"memroy": "1g"}, "[limits]: unknown key 'memroy' (expected memory, memory-swap, cpus, "
     "cpu-shares, cpuset-cpus, pids-limit, shm-size, ulimit)"),
    ({"memory": "5m"}, "[limits] memory: the minimum memory limit is 6MiB"),
    ({"memory": True}, "[limits] memory: expected a string or an integer, got True"),
    ({"cpus": "x"}, "[limits] cpus: 'x' is not a number of CPUs"),
    ({"ulimit": "nofile=1"}, "[limits] ulimit: expected a list of name=soft[:hard] strings"),
    ({"ulimit": ["nofile"]}, "[limits] ulimit nofile: invalid ulimit argument"),
    ({"memory-swap": "1g"}, "memory-swap = '1g' in [limits] of /etc/x.toml: set --memory as "
     "well"),
])
def test_bad_config_values_name_the_file_and_key(table: dict[str, object], message: str
                                                 ) -> None:
    with pytest.raises(BuildError) as caught:
        limits.from_config(table, "/etc/x.toml")
    text = str(caught.value)
    assert message in text and "\n" not in text
    assert text.startswith("builder config /etc/x.toml") or text.startswith("memory-swap")


def test_the_commands_refuse_bad_limits_in_one_line(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYBUILD_CONFIG", str(tmp_path / "missing.toml"))
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx/Dockerfile").write_text("FROM busybox\nRUN true\n")
    root = str(tmp_path / "store")
    assert main(["--root", root, "build", "--memory", "5m", str(tmp_path / "ctx")]) == 1
    assert capsys.readouterr().err == "error: --memory: the minimum memory limit is 6MiB\n"
    assert main(["--root", root, "run", "--ulimit", "nofile=2:1", "busybox"]) == 1
    assert capsys.readouterr().err == ("error: --ulimit nofile=2:1: ulimit soft limit must be "
                                       "less than or equal to hard limit: 2 > 1\n")
    config = tmp_path / "pybuild.toml"
    config.write_text('[limits]\nmemory = "1g"\npids = 3\n')
    monkeypatch.setenv("PYBUILD_CONFIG", str(config))
    assert main(["--root", root, "build", str(tmp_path / "ctx")]) == 1
    assert capsys.readouterr().err == (
        f"error: builder config {config}: [limits]: unknown key 'pids' (expected memory, "
        "memory-swap, cpus, cpu-shares, cpuset-cpus, pids-limit, shm-size, ulimit)\n")
