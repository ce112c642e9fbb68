"""What resource limits cost a run: ``pybuild run`` with and without cgroup limits, side by
side with ``docker run`` with and without the same flags, on the same busybox image.

    .venv/bin/python bench/limits_bench.py --runs 20

Prints the median time of a run in each of the four cases and the ratios: limited/unlimited
for each tool (the cost of making, joining and removing the cgroups) and pybuild/docker.
Run as root on a machine with a Docker engine; the image is made from Debian's
busybox-static and loaded into both tools under a name of this benchmark's own.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from layerstore.content.local import LocalStore  # noqa: E402
from layerstore.docker_archive import ArchiveImage, write_docker_archive  # noqa: E402
from tests.builder.bases import DOCKER, busybox_image  # noqa: E402

IMAGE = "limits-bench/busybox:1"
LIMITS = ("--memory", "256m", "--pids-limit", "100", "--cpus", "1")
PYBUILD = str(REPO / ".venv/bin/pybuild")


def timed(argv: list[str]) -> float:
    """Seconds one successful run took (a failed start is retried, up to 3 times: a busy
    shared Docker engine sometimes fails to create a container)."""
    for attempt in range(3):
        started = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, timeout=120)
        if proc.returncode == 0:
            return time.perf_counter() - started
        print(f"{argv[0]} failed ({proc.returncode}), attempt {attempt + 1}: "
              f"{proc.stderr.decode(errors='replace').strip()[:200]}", file=sys.stderr)
    raise SystemExit(f"{' '.join(argv)} keeps failing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per case (default 20)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="limits-bench-") as tmp:
        root = Path(tmp) / "store"
        archive = Path(tmp) / "busybox.tar"
        content = LocalStore(Path(tmp) / "content")
        write_docker_archive(archive, content,
                             [ArchiveImage(busybox_image(content, Path(tmp)), (IMAGE,))])
        subprocess.run([PYBUILD, "--root", str(root), "load", "-i", str(archive)], check=True,
                       capture_output=True)
        subprocess.run([DOCKER, "load", "-i", str(archive)], check=True, capture_output=True)
        try:
            cases = {
                "pybuild": [PYBUILD, "--root", str(root), "run", "--rm"],
                "pybuild limited": [PYBUILD, "--root", str(root), "run", "--rm", *LIMITS],
                "docker": [DOCKER, "run", "--rm", "--network", "none"],
                "docker limited": [DOCKER, "run", "--rm", "--network", "none", *LIMITS],
            }
            times: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(args.runs):  # interleaved, so load changes hit every case alike
                for name, argv in cases.items():
                    times[name].append(timed([*argv, IMAGE, "/bin/true"]))
        finally:
            subprocess.run([DOCKER, "rmi", IMAGE], capture_output=True)
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, value in median.items():
        print(f"{name:16} median {value * 1000:7.1f} ms  ({args.runs} runs)")
    print(f"pybuild limited/unlimited {median['pybuild limited'] / median['pybuild']:.2f}")
    print(f"docker  limited/unlimited {median['docker limited'] / median['docker']:.2f}")
    print(f"limited pybuild/docker    {median['pybuild limited'] / median['docker limited']:.2f}")


if __name__ == "__main__":
    main()
