"""A CI job's build and push, and a no-op rebuild: pybuild against BuildKit + docker push.

For every example, in one run and against the same registry (ours, plain HTTP on loopback):

* cold build and push: ``pybuild build --push`` in a fresh store holding only the base images,
  against ``DOCKER_BUILDKIT=1 docker build --no-cache`` followed by ``docker push``; every push
  goes to a registry started empty for it, so every blob is uploaded (docker remembers where
  it pushed a layer before and would otherwise mount it);
* no-op rebuild: the same build again with everything cached (no push), for both.

The median of ``--repeat`` runs is shown with the ratio pybuild/BuildKit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.build_bench import PybuildTool, measure, total  # noqa: E402
from registry.testing.processes import ours  # noqa: E402
from tests.builder.bases import BaseImageError, load_into_docker, make_base_images  # noqa: E402
from tests.builder.examples import (  # noqa: E402
    DOCKER,
    CommandFailed,
    Example,
    all_examples,
    buildkit_argv,
    pybuild_argv,
)

TIMEOUT = 900


def _pybuild_runs(tool: PybuildTool, example: Example, tag: str, registry: str,
                  workdir: Path) -> tuple[float, float]:
    root = workdir / "pybuild-root"
    shutil.rmtree(root, ignore_errors=True)
    tool.copy_to(root)
    try:
        parts = []
        if example.parent is not None:
            parts.append(measure(pybuild_argv(example, root, [example.parent.tag],
                                              parent=True), workdir))
        argv = pybuild_argv(example, root, [tag])
        push = [*argv[:-1], "--push", "--insecure-registry", registry, argv[-1]]
        parts.append(measure(push, workdir))
        cold = total(parts).seconds
        noop = measure(argv, workdir).seconds
        return cold, noop
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _buildkit_runs(example: Example, tag: str, workdir: Path) -> tuple[float, float]:
    env = {"DOCKER_BUILDKIT": "1"}
    parts = []
    if example.parent is not None:
        parts.append(measure(buildkit_argv(example, example.parent.tag, parent=True,
                                           no_cache=True), workdir, env))
    parts.append(measure(buildkit_argv(example, tag, no_cache=True), workdir, env))
    parts.append(measure([DOCKER, "push", "--quiet", tag], workdir))
    cold = total(parts, rss=False).seconds
    noop = measure(buildkit_argv(example, tag), workdir, env).seconds
    subprocess.run([DOCKER, "rmi", tag], capture_output=True, timeout=120)
    return cold, noop


@contextlib.contextmanager
def _registry(root: Path) -> Iterator[str]:
    """An empty registry of ours for one push; yields HOST:PORT."""
    registry = ours(root).start()
    try:
        yield registry.address
    finally:
        registry.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    """Set up the bases and a registry, time both tools on every example, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", default="", help="comma-separated names (default: all)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # time pybuild as installed: with .pyc
    wanted = {n for n in args.examples.split(",") if n}
    examples = [e for e in all_examples() if not wanted or e.name in wanted]
    with tempfile.TemporaryDirectory(prefix="pybuild-ci-bench-") as tmp:
        workdir = Path(tmp)
        try:
            bases = make_base_images(workdir / "bases")
            load_into_docker(bases)
            tool = PybuildTool(bases, workdir)
        except (BaseImageError, CommandFailed) as exc:
            print(f"setup failed: {exc}", file=sys.stderr)
            return 1
        print(f"{len(examples)} examples, median of {args.repeat}, a fresh registry for "
              "every push\n")
        header = (f"{'example':<14}{'pybuild push':>14}{'BuildKit+push':>15}{'ratio':>8}"
                  f"{'pybuild no-op':>15}{'BuildKit no-op':>16}{'ratio':>8}")
        print(header)
        print("-" * len(header))
        sums = [0.0, 0.0, 0.0, 0.0]
        for example in examples:
            ours_runs, bk_runs = [], []
            for n in range(args.repeat):
                try:
                    with _registry(workdir / f"registry-{example.name}-{n}-a") as address:
                        ours_runs.append(_pybuild_runs(
                            tool, example, f"{address}/bench/{example.name}:1", address,
                            workdir))
                    with _registry(workdir / f"registry-{example.name}-{n}-b") as address:
                        bk_runs.append(_buildkit_runs(
                            example, f"{address}/bench/{example.name}:1", workdir))
                except CommandFailed as exc:
                    print(f"{example.name}: failed: {exc}"[:2000])
                    break
            if not ours_runs or not bk_runs:
                continue
            cold = statistics.median(r[0] for r in ours_runs)
            noop = statistics.median(r[1] for r in ours_runs)
            bk_cold = statistics.median(r[0] for r in bk_runs)
            bk_noop = statistics.median(r[1] for r in bk_runs)
            for i, value in enumerate((cold, bk_cold, noop, bk_noop)):
                sums[i] += value
            print(f"{example.name:<14}{cold:>12.2f} s{bk_cold:>13.2f} s{cold / bk_cold:>7.2f}x"
                  f"{noop:>13.2f} s{bk_noop:>14.2f} s{noop / bk_noop:>7.2f}x")
        print("-" * len(header))
        print(f"{'total':<14}{sums[0]:>12.2f} s{sums[1]:>13.2f} s{sums[0] / sums[1]:>7.2f}x"
              f"{sums[2]:>13.2f} s{sums[3]:>14.2f} s{sums[2] / sums[3]:>7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
