"""What a network namespace of its own costs a RUN step: the default network (a fresh
namespace connected by slirp4netns, with its TAP filter) against the host's network (no
namespace, what the default network was before) and none (a namespace with only lo).

* executor: ``NamespaceExecutor.run`` of ``true`` on a busybox rootfs, the three modes
  interleaved, ``--runs`` times each; the median and the 90th percentile per run;
* build: ``pybuild build --no-cache`` of a Dockerfile of ``--steps`` tiny RUN steps on
  busybox, each mode ``--repeat`` times interleaved, in a fresh copy of a store holding only
  busybox; the median wall time.

Both print the default network's time over the host network's.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder.executor import NamespaceExecutor, RunSpec  # noqa: E402
from layerstore.testing.rootfs import make_busybox_rootfs  # noqa: E402
from tests.builder.conftest import seed_busybox  # noqa: E402
from tests.builder.examples import pybuild_command  # noqa: E402

MODES = ("default", "host", "none")


def executor_bench(rootfs: Path, runs: int) -> dict[str, list[float]]:
    executor = NamespaceExecutor(output=lambda _: None)
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(runs):
        for mode in MODES:
            spec = RunSpec(("true",), ("PATH=/bin",), network=mode)  # type: ignore[arg-type]
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
            argv = [*pybuild_command(), "--root", str(root), "build", "--progress=quiet",
                    "--no-cache", f"--network={mode}", str(ctx)]
            if mode == "host":
                argv[-1:-1] = ["--allow", "network.host"]
            start = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True, timeout=1800)
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
            print(f"  {mode:8} median {statistics.median(t) * 1000:6.1f} ms   "
                  f"p90 {t[int(len(t) * 0.9) - 1] * 1000:6.1f} ms")
        d, h = statistics.median(times["default"]), statistics.median(times["host"])
        print(f"  default/host {d / h:.2f}  (+{(d - h) * 1000:.1f} ms per RUN)")
        seeded = work / "seeded"
        seed_busybox(seeded, rootfs)
        times = build_bench(work, seeded, args.steps, args.repeat)
        print(f"build of {args.steps} RUN steps, --no-cache, {args.repeat} builds per mode:")
        for mode in MODES:
            print(f"  {mode:8} median {statistics.median(times[mode]):6.2f} s")
        d, h = statistics.median(times["default"]), statistics.median(times["host"])
        print(f"  default/host {d / h:.2f}  (+{(d - h) / args.steps * 1000:.1f} ms per RUN)")


if __name__ == "__main__":
    main()
