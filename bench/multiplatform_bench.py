"""A two-platform build (linux/amd64 natively + linux/arm64 under qemu-user-static) against
the two single-platform builds run one after the other, in one run.

The store holds ``busybox:latest`` as an index of Debian's busybox-static for amd64 and arm64
(``tests/builder/multiplatform_bases.py``; the arm64 package is downloaded with apt once and
cached). The Dockerfile has a ``FROM --platform=$BUILDPLATFORM`` stage (its work is shared by
the platforms of the two-platform build, and done twice by the two single builds) and a
target stage whose RUN does some shell work (under qemu for arm64). Every build is
``--no-cache``; each variant runs ``--repeat`` times, interleaved; medians are printed and
the ratio two-platform / (amd64 + arm64).

    python bench/multiplatform_bench.py [--repeat 3] [--work N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.builder.multiplatform_bases import seed_multiplatform_busybox  # noqa: E402

TIMEOUT = 1800
DOCKERFILE = """\
FROM --platform=$BUILDPLATFORM busybox AS tools
ARG WORK
RUN i=0; while [ $i -lt $WORK ]; do echo "tool $i" | sha256sum; i=$((i+1)); done > /tools
FROM busybox
ARG WORK
COPY --from=tools /tools /tools
RUN i=0; while [ $i -lt $WORK ]; do echo "app $i" | sha256sum; i=$((i+1)); done > /app \\
    && uname -m > /arch
"""
VARIANTS = {
    "two-platform": ["linux/amd64,linux/arm64"],
    "amd64 then arm64": ["linux/amd64", "linux/arm64"],
}


def _build(root: Path, context: Path, platform: str, work: int) -> None:
    argv = [sys.executable, "-m", "builder.cli", "--root", str(root), "build", "--no-cache",
            "--progress=quiet", "--platform", platform, "--build-arg", f"WORK={work}",
            "-t", "bench-multi:1", str(context)]
    proc = subprocess.run(argv, capture_output=True, timeout=TIMEOUT, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr.decode()[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=int, default=300,
                        help="loop iterations of each RUN (default 300)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="multiplatform-bench-") as tmp:
        work = Path(tmp)
        root = work / "store"
        seed_multiplatform_busybox(root, work / "bases")
        context = work / "ctx"
        context.mkdir()
        (context / "Dockerfile").write_text(DOCKERFILE)
        _build(root, context, "linux/amd64,linux/arm64", 1)  # warm up: unpack both bases
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for _ in range(args.repeat):
            for name, platforms in VARIANTS.items():
                start = time.perf_counter()
                for platform in platforms:
                    _build(root, context, platform, args.work)
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"multi-platform build, {args.work} loop iterations per RUN, "
          f"median of {args.repeat}:")
    for name, value in medians.items():
        print(f"  {name:<18} {value:7.2f} s")
    ratio = medians["two-platform"] / medians["amd64 then arm64"]
    print(f"  ratio two-platform / (amd64 + arm64): {ratio:.2f}x")


if __name__ == "__main__":
    main()
