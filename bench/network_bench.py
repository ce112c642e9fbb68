"""What a network namespace of its own costs a RUN step: the default network (a fresh
namespace connected by slirp4netns, with its TAP filter) against the host's network (no
namespace, what the default network was before) and none (a namespace with only lo).
``default`` joins a namespace prepared while the previous run went on; ``default-direct``
(``network.PREPARE_AHEAD`` off) starts the stack once the run's namespace exists.

* executor: ``NamespaceExecutor.run`` of ``true`` on a busybox rootfs, the modes
  interleaved, ``--runs`` times each; the median and the 90th percentile per run;
* build: ``pybuild build --no-cache`` (in this process) of a Dockerfile of ``--steps`` tiny
  RUN steps on busybox, each mode ``--repeat`` times interleaved, in a fresh copy of a
  store holding only busybox; the median wall time.

Both print each default mode's time over the host network's.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder.cli import main as pybuild  # noqa: E402
from builder.executor import (  # noqa: E402
    NamespaceExecutor,
    RunSpec,
    network,
)
from layerstore.testing.rootfs import make_busybox_rootfs  # noqa: E402
from tests.builder.conftest import seed_busybox  # noqa: E402

MODES = ("default", "default-direct", "host", "none")


def _network(mode: str) -> str:
    network.PREPARE_AHEAD = mode != "default-direct"
    return mode.partition("-")[0]


def executor_bench(rootfs: Path, runs: int) -> dict[str, list[float]]:
    executor = NamespaceExecutor(output=lambda _: None)
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(runs):
        for mode in MODES:
            spec = RunSpec(("true",), ("PATH=/bin",),
                           network=_network(mode))  # type: ignore[arg-type]
            start = time.perf_counter()
            result = executor.run(spec, rootfs)
            times[mode].append(time.perf_counter() - start)
            if result.exit_code != 0:
                raise SystemExit(f"RUN true on {mode} failed: {result}")
    return times


def build_bench(work: Path, seeded: Path, steps: int, repeat: int) -> dict[str, list[float]]:
    ctx = work / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n" + "".join(f"RUN echo {i} > /step\n" for i in range(steps)))
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(repeat):
        for mode in MODES:
            root = work / f"store-{mode}-{r}"
            shutil.copytree(seeded, root, symlinks=True)
            argv = ["--root", str(root), "build", "--progress=quiet", "--no-cache",
                    f"--network={_network(mode)}", "--allow", "network.host", str(ctx)]
            start = time.perf_counter()
            if pybuild(argv) != 0:
                raise SystemExit(f"the build on {mode} failed")
            times[mode].append(time.perf_counter() - start)
            shutil.rmtree(root)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100, help="executor runs per mode")
    parser.add_argument("--steps", type=int, default=50, help="RUN steps in the build")
    parser.add_argument("--repeat", type=int, default=3, help="builds per mode")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pybuild-netbench-") as tmp:
        work = Path(tmp)
        rootfs = make_busybox_rootfs(work / "rootfs")
        times = executor_bench(rootfs, args.runs)
        print(f"executor, RUN true, {args.runs} runs per mode (interleaved):")
        for mode in MODES:
            t = sorted(times[mode])
            print(f"  {mode:14} median {statistics.median(t) * 1000:6.1f} ms   "
                  f"p90 {t[int(len(t) * 0.9) - 1] * 1000:6.1f} ms")
        _ratios(times, 1)
        seeded = work / "seeded"
        seed_busybox(seeded, rootfs)
        times = build_bench(work, seeded, args.steps, args.repeat)
        print(f"build of {args.steps} RUN steps, --no-cache, {args.repeat} builds per mode:")
        for mode in MODES:
            print(f"  {mode:14} median {statistics.median(times[mode]):6.2f} s")
        _ratios(times, args.steps)


def _ratios(times: dict[str, list[float]], steps: int) -> None:
    h = statistics.median(times["host"])
    for mode in ("default", "default-direct"):
        d = statistics.median(times[mode])
        print(f"  {mode}/host {d / h:.2f}  ({(d - h) / steps * 1000:+.1f} ms per RUN)")


if __name__ == "__main__":
    main()
