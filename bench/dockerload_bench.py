"""An example built into the local Docker engine: ``pybuild build --load`` against
``docker build`` (BuildKit), in one run.

Every build starts with the base images present (in docker's image store, and in a fresh
copy of a pybuild store holding only them) and no build cache; each ends with the image
listed by ``docker images``:

* docker: ``DOCKER_BUILDKIT=1 docker build --no-cache -t T``;
* pybuild (no load): ``pybuild build --no-cache -t T``, the image left in pybuild's store
  (what ``--load`` adds is the difference to the next line);
* pybuild --load: ``pybuild build --no-cache --load -t T`` (the image streamed to
  ``POST /images/load`` as it is produced);
* pybuild + save | load: ``pybuild build`` then ``pybuild save T | docker load``, the way
  without ``--load``;
* pybuild FROM docker: ``pybuild build --load`` in an empty store, the base image read from
  the engine (``GET /images/{name}/get``) on the way.

Each is run ``--repeat`` times, interleaved; the median is shown with its ratio to docker's.
The images are named ``dockerstore-bench-…`` and removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from build_bench import Measured, PybuildTool, measure  # noqa: E402

from tests.builder.bases import make_base_images  # noqa: E402
from tests.builder.examples import (  # noqa: E402
    DOCKER,
    CommandFailed,
    Example,
    all_examples,
    buildkit_argv,
    pybuild_argv,
    pybuild_command,
)

PREFIX = "dockerstore-bench"
WAYS = ("docker", "pybuild (no load)", "pybuild --load", "pybuild + save | load",
        "pybuild FROM docker")


def _rmi(tag: str) -> None:
    subprocess.run([DOCKER, "rmi", "-f", tag], capture_output=True, timeout=300)


class Runner:
    """The ways of getting an example's image into docker, each measured."""

    def __init__(self, tool: PybuildTool, workdir: Path) -> None:
        self.tool = tool
        self.workdir = workdir
        self.root = workdir / "pybuild-root"
        self.env = dict(os.environ, PYBUILD_NO_DAEMON="1", DOCKER_BUILDKIT="1")

    def _fresh(self, template: bool) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        if template:
            self.tool.copy_to(self.root)
        else:
            self.root.mkdir()

    def docker(self, example: Example, tag: str) -> Measured:
        return measure(buildkit_argv(example, tag, no_cache=True), self.workdir, self.env)

    def load(self, example: Example, tag: str, template: bool = True) -> Measured:
        self._fresh(template)
        argv = pybuild_argv(example, self.root, [tag], no_cache=True)
        return measure([*argv[:-1], "--load", argv[-1]], self.workdir, self.env)

    def no_load(self, example: Example, tag: str) -> Measured:
        self._fresh(True)
        argv = pybuild_argv(example, self.root, [tag], no_cache=True)
        return measure(argv, self.workdir, self.env)

    def from_docker(self, example: Example, tag: str) -> Measured:
        return self.load(example, tag, template=False)

    def save_load(self, example: Example, tag: str) -> Measured:
        self._fresh(True)
        build = shlex.join(pybuild_argv(example, self.root, [tag], no_cache=True))
        save = shlex.join([*pybuild_command(), "--root", str(self.root), "save", tag])
        script = f"{build} >/dev/null 2>&1 && {save} | {DOCKER} load -q"
        return measure(["sh", "-c", script], self.workdir, self.env)

    def ways(self) -> dict[str, Callable[[Example, str], Measured]]:
        return {"docker": self.docker, "pybuild (no load)": self.no_load,
                "pybuild --load": self.load,
                "pybuild + save | load": self.save_load,
                "pybuild FROM docker": self.from_docker}


def main() -> int:
    names = [e.name for e in all_examples() if e.parent is None and not e.secrets]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", action="append", choices=names,
                        help="an example to build (repeatable; default python-app and "
                             "static-site)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each way (default 3)")
    args = parser.parse_args()
    wanted = args.example or ["python-app", "static-site"]
    examples = [e for e in all_examples() if e.name in wanted]
    with tempfile.TemporaryDirectory(prefix="dockerload-bench-") as tmp:
        workdir = Path(tmp)
        bases = make_base_images(workdir / "bases")
        from tests.builder.bases import load_into_docker

        load_into_docker(bases)
        runner = Runner(PybuildTool(bases, workdir), workdir)
        results: dict[tuple[str, str], list[float]] = {}
        errors: dict[tuple[str, str], str] = {}
        try:
            for example in examples:
                for i in range(args.repeat):
                    for way, build in runner.ways().items():
                        key = (example.name, way)
                        if key in errors:
                            continue
                        tag = f"{PREFIX}-{example.name}:{WAYS.index(way)}"
                        try:
                            results.setdefault(key, []).append(build(example, tag).seconds)
                        except CommandFailed as exc:
                            errors[key] = str(exc).splitlines()[0]
                        finally:
                            _rmi(tag)
                    print(f"{example.name}: round {i + 1} of {args.repeat} done",
                          file=sys.stderr)
        finally:
            shutil.rmtree(runner.root, ignore_errors=True)
    print(f"{'example':<14} {'way':<24} {'median s':>9} {'vs docker':>9}")
    for example in examples:
        base = results.get((example.name, "docker"))
        base_median = statistics.median(base) if base else None
        for way in WAYS:
            key = (example.name, way)
            if key in errors:
                print(f"{example.name:<14} {way:<24} failed: {errors[key]}")
                continue
            median = statistics.median(results[key])
            ratio = f"{median / base_median:.2f}" if base_median else "-"
            print(f"{example.name:<14} {way:<24} {median:>9.2f} {ratio:>9}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
