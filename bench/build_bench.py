"""Cold builds of the example Dockerfiles: pybuild against BuildKit and buildah, in one run.

Every build starts with the base images present and no build cache:

* pybuild: ``pybuild --root R build`` in a fresh copy of a store holding only the base images
  (their layers unpacked, as docker and buildah hold theirs);
* BuildKit: ``DOCKER_BUILDKIT=1 docker build --no-cache`` (docker 20.10);
* buildah: ``buildah bud --layers=false --isolation chroot --format docker`` on a storage of
  its own into which the base images were pulled from their docker-archives.

An example with a parent image (ONBUILD) counts the parent's build and the child's. Examples
with a ``peer_dockerfile`` (heredocs) are built from it by BuildKit and buildah, which have no
heredocs here. Each build runs ``--repeat`` times, interleaved across the tools; the median
is shown. Peak RSS is the largest ``ru_maxrss`` among the build command's processes (for
pybuild, RUN steps included); docker's is not shown, the work happens in dockerd.

While ``pybuild build`` is not available the table shows the peers only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder.store import BuildStore, unpack_layers  # noqa: E402
from layerstore.oci import Manifest  # noqa: E402
from layerstore.walk import load_manifest  # noqa: E402
from tests.builder.bases import (  # noqa: E402
    BaseImageError,
    BaseImages,
    load_into_buildah,
    load_into_docker,
    load_into_pybuild,
    make_base_images,
)
from tests.builder.examples import (  # noqa: E402
    DOCKER,
    PODMAN_CONF,
    CommandFailed,
    Example,
    all_examples,
    build_options,
    buildkit_argv,
    pybuild_argv,
    pybuild_command,
    run,
)

TOOLS = ("pybuild", "buildkit", "buildah")
TIMEOUT = 900
BENCH_PREFIX = "pybuild-bench"

# Runs one command and writes "<wall seconds> <max RSS of its process tree in KiB>" to a file:
# a fresh process, so RUSAGE_CHILDREN holds this command's processes only.
_MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[2:]).returncode
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as out:
    out.write(f"{seconds} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
sys.exit(code)
"""


@dataclass(frozen=True)
class Measured:
    """One build: wall seconds and the peak RSS in bytes (None when not meaningful)."""

    seconds: float
    rss: int | None


@dataclass(frozen=True)
class Outcome:
    """The runs of one tool on one example, or why it failed."""

    runs: tuple[Measured, ...] = ()
    error: str | None = None

    @property
    def seconds(self) -> float | None:
        """The median wall time, or None when the tool failed."""
        return statistics.median(m.seconds for m in self.runs) if self.runs else None

    @property
    def rss(self) -> int | None:
        """The largest peak RSS over the runs, or None."""
        values = [m.rss for m in self.runs if m.rss is not None]
        return max(values) if values else None


class Tool(Protocol):
    """A builder under test."""

    name: str

    def build(self, example: Example, tag: str) -> Measured:
        """A cold build of the example (its parent first), measured."""
        ...


def measure(argv: Sequence[str], workdir: Path, env: dict[str, str] | None = None) -> Measured:
    """Run ``argv`` under the measuring wrapper; raise CommandFailed when it fails."""
    report = workdir / "measure.out"
    run([sys.executable, "-c", _MEASURE, str(report), *argv], timeout=TIMEOUT, env=env)
    seconds, rss_kib = report.read_text().split()
    return Measured(float(seconds), int(rss_kib) * 1024)


def total(parts: Sequence[Measured], rss: bool = True) -> Measured:
    """Several builds of one example (parent and child) as one."""
    peak = max((p.rss or 0) for p in parts) if rss else None
    return Measured(sum(p.seconds for p in parts), peak)


class PybuildTool:
    """pybuild in a fresh store per build, copied from one holding only the base images with
    their layers unpacked (as docker and buildah hold theirs)."""

    name = "pybuild"

    def __init__(self, bases: BaseImages, workdir: Path) -> None:
        self.workdir = workdir
        self.template = workdir / "pybuild-template"
        load_into_pybuild(bases, self.template, pybuild_command())
        with BuildStore.open(self.template) as store:
            for base in bases.images:
                manifest = load_manifest(store.content, base.stored.manifest)
                if not isinstance(manifest, Manifest):
                    raise BaseImageError(f"{base.name}: not a single-platform image")
                unpack_layers(store, manifest.layers, base.stored.image.rootfs.diff_ids)

    def copy_to(self, root: Path) -> None:
        """A fresh store at ``root`` from the template, flushed to disk: a warm store's
        files are not dirty, and the first overlay unmount of a build would otherwise sync
        the whole copy (overlayfs syncs its upper filesystem on unmount)."""
        run(["cp", "-a", str(self.template), str(root)], timeout=TIMEOUT)
        run(["sync", "-f", str(root)], timeout=TIMEOUT)

    def build(self, example: Example, tag: str) -> Measured:
        """A cold build of the example (its parent first)."""
        root = self.workdir / "pybuild-root"
        shutil.rmtree(root, ignore_errors=True)
        self.copy_to(root)
        try:
            parts = []
            if example.parent is not None:
                parts.append(measure(pybuild_argv(example, root, [example.parent.tag],
                                                  parent=True), self.workdir))
            parts.append(measure(pybuild_argv(example, root, [tag]), self.workdir))
            return total(parts)
        finally:
            shutil.rmtree(root, ignore_errors=True)


class BuildkitTool:
    """docker build with BuildKit and --no-cache; the images are removed after each build."""

    name = "buildkit"

    def __init__(self, bases: BaseImages, workdir: Path) -> None:
        self.workdir = workdir
        load_into_docker(bases)

    def build(self, example: Example, tag: str) -> Measured:
        """A cold build of the example (its parent first)."""
        env = {"DOCKER_BUILDKIT": "1"}
        parts = []
        if example.parent is not None:
            parts.append(measure(buildkit_argv(example, example.parent.tag, parent=True,
                                               no_cache=True), self.workdir, env))
        parts.append(measure(buildkit_argv(example, tag, no_cache=True), self.workdir, env))
        subprocess.run([DOCKER, "rmi", tag], capture_output=True, timeout=120)
        return total(parts, rss=False)


class BuildahTool:
    """buildah bud with --layers=false on a storage of its own holding the base images."""

    name = "buildah"

    def __init__(self, bases: BaseImages, workdir: Path) -> None:
        self.workdir = workdir
        self.storage = workdir / "buildah"
        conf = workdir / "containers.conf"
        conf.write_text(PODMAN_CONF)
        self.env = {"CONTAINERS_CONF": str(conf)}
        load_into_buildah(bases, self.global_argv(), self.env)

    def global_argv(self) -> list[str]:
        """buildah with this benchmark's storage."""
        return ["buildah", "--root", str(self.storage / "storage"), "--runroot",
                str(self.storage / "run"), "--storage-driver", "overlay"]

    def bud(self, dockerfile: Path, context: Path, tag: str, options: Sequence[str]) -> list[str]:
        """A ``buildah bud`` command line."""
        return [*self.global_argv(), "bud", "--format", "docker", "--layers=false",
                "--isolation", "chroot", "--quiet", "-t", tag, *options, "-f", str(dockerfile),
                str(context)]

    def build(self, example: Example, tag: str) -> Measured:
        """A cold build of the example (its parent first)."""
        parts = []
        if example.parent is not None:
            parts.append(measure(self.bud(example.parent.dockerfile, example.parent.context,
                                          example.parent.tag, ()), self.workdir, self.env))
        parts.append(measure(self.bud(example.peer_dockerfile or example.dockerfile,
                                      example.context, tag, build_options(example)),
                             self.workdir, self.env))
        subprocess.run([*self.global_argv(), "rmi", "-f", tag], capture_output=True,
                       timeout=120, env={**os.environ, **self.env})
        return total(parts)

    def close(self) -> None:
        """Remove the storage (its images first, so nothing stays mounted)."""
        subprocess.run([*self.global_argv(), "rmi", "-a", "-f"], capture_output=True,
                       timeout=300, env={**os.environ, **self.env})
        shutil.rmtree(self.storage, ignore_errors=True)


def pybuild_ready() -> str | None:
    """None when ``pybuild build`` answers ``--help``; else the last line of its complaint."""
    with tempfile.TemporaryDirectory(prefix="pybuild-probe-") as tmp:
        proc = subprocess.run([*pybuild_command(), "--root", tmp, "build", "--help"],
                              capture_output=True, text=True, timeout=120)
    if proc.returncode == 0:
        return None
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {proc.returncode}"


def _cell(seconds: float | None, error: str | None) -> str:
    if error is not None:
        return "FAILED"
    return "n/a" if seconds is None else f"{seconds:.2f} s"


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def _mb(rss: int | None) -> str:
    return "n/a" if rss is None else f"{rss / 1e6:.0f} MB"


def _sum(values: Sequence[float | None]) -> float | None:
    """The sum, or None when any value is missing."""
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def print_table(examples: Sequence[Example], results: dict[tuple[str, str], Outcome],
                tools: Sequence[str]) -> None:
    """One row per example, then a total row and the failures."""
    head = (f"{'example':14s} {'pybuild':>9s} {'BuildKit':>9s} {'buildah':>9s} "
            f"{'ours/BK':>8s} {'ours/bah':>8s} {'pybuild RSS':>12s} {'buildah RSS':>12s}")
    print(head)
    print("-" * len(head))
    for example in examples:
        got = {t: results.get((example.name, t), Outcome()) for t in TOOLS}
        secs = {t: got[t].seconds for t in TOOLS}
        print(f"{example.name:14s} "
              + " ".join(f"{_cell(secs[t], got[t].error):>9s}" for t in TOOLS)
              + f" {_ratio(secs['pybuild'], secs['buildkit']):>8s}"
              f" {_ratio(secs['pybuild'], secs['buildah']):>8s}"
              f" {_mb(got['pybuild'].rss):>12s} {_mb(got['buildah'].rss):>12s}")
    totals = {t: _sum([results.get((e.name, t), Outcome()).seconds for e in examples])
              if t in tools else None for t in TOOLS}
    print("-" * len(head))
    print(f"{'total':14s} " + " ".join(f"{_cell(totals[t], None):>9s}" for t in TOOLS)
          + f" {_ratio(totals['pybuild'], totals['buildkit']):>8s}"
          f" {_ratio(totals['pybuild'], totals['buildah']):>8s}")
    for (name, tool), outcome in sorted(results.items()):
        if outcome.error is not None:
            print(f"\n{tool} failed on {name}:\n{outcome.error[-1500:]}")


def main() -> int:
    """Make the bases, set up each tool, build every example with each, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", default="",
                        help="comma-separated example names (default: all)")
    parser.add_argument("--tools", default=",".join(TOOLS),
                        help=f"comma-separated subset of {','.join(TOOLS)}")
    parser.add_argument("--repeat", type=int, default=3, help="builds per example and tool")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the stores and base archives go")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # time pybuild as installed: with .pyc
    wanted = {n for n in args.examples.split(",") if n}
    examples = [e for e in all_examples() if not wanted or e.name in wanted]
    tools = [t for t in args.tools.split(",") if t]
    if unknown := set(tools) - set(TOOLS):
        parser.error(f"unknown tools {sorted(unknown)}")
    if "pybuild" in tools and (why := pybuild_ready()) is not None:
        print(f"pybuild build is not available ({why}); timing the peers only\n")
        tools.remove("pybuild")
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="pybuild-build-bench-") as tmp:
        workdir = Path(tmp)
        try:
            bases = make_base_images(workdir / "bases")
            makers: dict[str, Callable[[BaseImages, Path], Tool]] = {
                "pybuild": PybuildTool, "buildkit": BuildkitTool, "buildah": BuildahTool}
            runners = {t: makers[t](bases, workdir) for t in tools}
        except (BaseImageError, CommandFailed) as exc:
            print(f"setup failed: {exc}", file=sys.stderr)
            return 1
        print(f"{len(examples)} examples, {args.repeat} cold build(s) each, tools: "
              f"{', '.join(tools)}; base images {', '.join(b.name for b in bases.images)}\n")
        results: dict[tuple[str, str], Outcome] = {}
        try:
            for example in examples:
                for _ in range(args.repeat):
                    for tool in tools:
                        key = (example.name, tool)
                        if results.get(key, Outcome()).error is not None:
                            continue
                        tag = f"{BENCH_PREFIX}/{example.name}:{tool}"
                        try:
                            measured = runners[tool].build(example, tag)
                        except CommandFailed as exc:
                            results[key] = Outcome(error=str(exc))
                            continue
                        before = results.get(key, Outcome())
                        results[key] = Outcome(runs=(*before.runs, measured))
            print_table(examples, results, tools)
        finally:
            buildah = runners.get("buildah")
            if isinstance(buildah, BuildahTool):
                buildah.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
