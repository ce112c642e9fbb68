"""50 tiny RUN steps in the hardened sandbox against the sandbox before hardening.

The baseline is the previous executor itself: ``builder/executor/sandbox.py`` as it was in
the commit before ``builder/executor/hardening.py`` was added (``git show``), loaded as a
module beside today's. Both run the same ``RunSpec`` (``sh -c true``) on the same busybox
rootfs, ``--steps`` times each, in alternating rounds; the best and median round of each and
their ratio (hardened / previous, target ≤ 1.15) are printed. ``--insecure`` adds a third
column: today's executor with ``security="insecure"`` (pivot_root, no capabilities dropped,
no seccomp).

Timing the executor alone is the strict view. ``--build`` times what a user sees instead:
``pybuild build --no-cache`` of a Dockerfile of ``--steps`` tiny RUN steps on busybox, with
today's code and with the whole code tree of the baseline revision (``git archive``, run with
``PYTHONPATH``), each in a fresh copy of one seeded store, alternating; a build step also
mounts an overlay snapshot and commits a layer, which both share.

    .venv/bin/python bench/sandbox_bench.py [--steps 50] [--rounds 5] [--baseline REV] [--build]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder.executor import NamespaceExecutor, RunSpec  # noqa: E402
from layerstore.testing.rootfs import make_busybox_rootfs  # noqa: E402

PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"


def baseline_rev() -> str:
    """The commit before the one that added builder/executor/hardening.py."""
    added = subprocess.run(
        ["git", "-C", str(ROOT), "log", "--diff-filter=A", "--format=%H", "--",
         "builder/executor/hardening.py"], capture_output=True, text=True, check=True
    ).stdout.split()
    if not added:
        sys.exit("sandbox_bench: no commit adds builder/executor/hardening.py; pass --baseline")
    return added[-1] + "^"


def load_previous(rev: str, where: Path) -> ModuleType:
    """``builder/executor/sandbox.py`` of ``rev`` as the module ``previous_sandbox``."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:builder/executor/sandbox.py"],
                          capture_output=True, text=True, check=True).stdout
    path = where / "previous_sandbox.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("previous_sandbox", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["previous_sandbox"] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def build_rounds(rev: str, steps: int, rounds: int, tmp: Path) -> dict[str, list[float]]:
    """Wall times of ``pybuild build --no-cache`` of ``steps`` RUN steps, per code tree."""
    from tests.builder.conftest import seed_busybox

    old = tmp / "previous-tree"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "builder", "layerstore",
                              "registry"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    seeded = tmp / "seeded"
    seed_busybox(seeded, make_busybox_rootfs(tmp / "seed-rootfs"))
    context = tmp / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "FROM busybox\n" + "".join(f"RUN echo {i} > /step-{i}\n" for i in range(steps)))
    trees = {"previous": str(old), "hardened": str(ROOT)}
    times: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(rounds):
        for name, tree in trees.items():
            store = tmp / f"store-{name}"
            shutil.rmtree(store, ignore_errors=True)
            shutil.copytree(seeded, store, symlinks=True)
            env = dict(os.environ, PYTHONPATH=tree, PYBUILD_NO_DAEMON="1")
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "builder.cli", "--root", str(store), "build",
                            "--no-cache", "--progress", "quiet", "-t", "bench:1", str(context)],
                           env=env, check=True, capture_output=True, cwd=tmp)
            times[name].append(time.perf_counter() - start)
            shutil.rmtree(store)
    return times


def timed(steps: int, run: Callable[[], int]) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        if run() != 0:
            sys.exit("sandbox_bench: a step failed")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", help="git revision of the previous sandbox")
    parser.add_argument("--build", action="store_true",
                        help="time whole pybuild builds instead of the executor alone")
    parser.add_argument("--insecure", action="store_true",
                        help="also time security=insecure with today's executor")
    args = parser.parse_args()
    rev = args.baseline or baseline_rev()
    if args.build:
        with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as tmp:
            times = build_rounds(rev, args.steps, args.rounds, Path(tmp))
        report(f"pybuild build --no-cache of {args.steps} RUN steps", rev, args.steps, times)
        return
    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as tmp:
        previous = load_previous(rev, Path(tmp))
        rootfs = make_busybox_rootfs(Path(tmp) / "rootfs")
        quiet: Callable[[bytes], None] = lambda _data: None  # noqa: E731
        hardened_spec = RunSpec(("sh", "-c", "true"), (PATH,))
        insecure_spec = RunSpec(("sh", "-c", "true"), (PATH,), security="insecure")
        runs: dict[str, Callable[[], int]] = {
            "previous": lambda: previous.NamespaceExecutor(output=quiet).run(
                hardened_spec, rootfs).exit_code,
            "hardened": lambda: NamespaceExecutor(output=quiet).run(
                hardened_spec, rootfs).exit_code,
        }
        if args.insecure:
            runs["insecure"] = lambda: NamespaceExecutor(output=quiet).run(
                insecure_spec, rootfs).exit_code
        for run in runs.values():  # warm up: imports, the seccomp program, page cache
            timed(3, run)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                times[name].append(timed(args.steps, run))
    report(f"{args.steps} executor runs (sh -c true)", rev, args.steps, times)


def report(what: str, rev: str, steps: int, times: dict[str, list[float]]) -> None:
    """Best and median per column and the hardened / previous ratios."""
    rounds = len(times["hardened"])
    print(f"{what} per round, {rounds} rounds; previous sandbox from {rev}")
    for name, values in times.items():
        print(f"  {name:9s} best {min(values):6.3f} s  median {statistics.median(values):6.3f} s"
              f"  ({1000 * min(values) / steps:5.1f} ms/step)")
    best = min(times["hardened"]) / min(times["previous"])
    median = statistics.median(times["hardened"]) / statistics.median(times["previous"])
    print(f"hardened / previous: best {best:.3f}x  median {median:.3f}x  (target <= 1.15x)")


if __name__ == "__main__":
    main()
