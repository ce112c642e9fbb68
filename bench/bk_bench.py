"""pybuild against today's BuildKit (v0.32.2, ``buildctl`` with a warm ``buildkitd``), in one run.

Cases: a Debian app (``bench/debian-app/Dockerfile``: a ~170 MB RUN layer and a COPY of
2,000 generated files) and the examples in ``examples/dockerfiles/``. For each case and tool:

* cold: build and push to a CNCF distribution started empty for it (pybuild in a fresh store
  holding only the unpacked base images; BuildKit with ``--no-cache``);
* no-op: the same build again, everything cached, no push (pybuild names the image in its
  store; BuildKit exports ``type=image`` without pushing);
* one file changed (the Debian app only): one of the 2,000 files rewritten, rebuilt and pushed
  to the same registry (the unchanged layers are already there).

BuildKit comes from ``/work/shared/reference/buildkit/bk`` (``--bk`` or ``$BK``): its own
``buildkitd`` in a ``/tmp/speed-bk-*`` directory and a docker.io mirror (distribution) on a
free port, holding the same base images pybuild starts from. Without ``bk`` (or without
``runc``) the bench says so and compares with docker's BuildKit (``docker build`` +
``docker push``) instead. Peak RSS is the largest ``ru_maxrss`` among pybuild's processes;
BuildKit's work happens in its daemon and is not shown. The median of ``--repeat`` runs is
printed with the ratio pybuild/BuildKit.

pybuild runs twice over: each command in its own process (``PYBUILD_NO_DAEMON=1``), and through
a ``pybuild daemon`` the bench starts (forks of a process with the modules loaded, as buildctl
goes through a warm buildkitd); a table each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.build_bench import Measured, PybuildTool, measure, total  # noqa: E402
from registry.testing.processes import RegistryProcess, distribution  # noqa: E402
from tests.builder.bases import BaseImageError, load_into_docker, make_base_images  # noqa: E402
from tests.builder.examples import (  # noqa: E402
    DOCKER,
    CommandFailed,
    Example,
    all_examples,
    build_options,
    pybuild_command,
    run,
)

DEFAULT_BK = Path("/work/shared/reference/buildkit/bk")
APP_DIR = ROOT / "bench" / "debian-app"
APP_FILES = 2000
TIMEOUT = 900


@dataclass(frozen=True)
class Case:
    """What one row builds: a Dockerfile, a context, build options, maybe a parent."""

    name: str
    dockerfile: Path
    context: Path
    options: tuple[str, ...] = ()
    parent: tuple[Path, Path, str] | None = None  # dockerfile, context, tag
    change: str | None = None  # a file (relative to the context) to rewrite

    def with_context(self, context: Path) -> Case:
        """The same case over a copy of its context (the Dockerfile inside it follows)."""
        dockerfile = self.dockerfile
        if dockerfile.is_relative_to(self.context):
            dockerfile = context / dockerfile.relative_to(self.context)
        return Case(self.name, dockerfile, context, self.options, self.parent, self.change)


def make_debian_app(dest: Path) -> Case:
    """The Debian app's context: its Dockerfile and 2,000 small source files in 20 dirs."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copy(APP_DIR / "Dockerfile", dest / "Dockerfile")
    for i in range(APP_FILES):
        d = dest / "src" / f"mod{i // 100:02d}"
        d.mkdir(parents=True, exist_ok=True)
        body = "".join(f"def f{i}_{n}(x):\n    return x * {n} + {i}\n\n" for n in range(40))
        (d / f"file{i:04d}.py").write_text(f"# module {i}\n{body}")
    return Case("debian-app", dest / "Dockerfile", dest, change="src/mod07/file0742.py")


def example_case(example: Example, peer: bool) -> Case:
    """An example as a case (BuildKit builds the ``peer_dockerfile`` when there is one)."""
    dockerfile = example.peer_dockerfile if peer and example.peer_dockerfile else (
        example.dockerfile)
    parent = None
    if example.parent is not None:
        parent = (example.parent.dockerfile, example.parent.context, example.parent.tag)
    return Case(example.name, dockerfile, example.context, tuple(build_options(example)),
                parent)


def rewrite(path: Path, round_: int) -> None:
    """Change one file's content (a new line at its end)."""
    with path.open("a") as f:
        f.write(f"# edited {round_}\n")


class Tool(Protocol):
    """A builder that can build a case cold (with a push), again, and after a change."""

    name: str

    def cold(self, case: Case, registry: str, n: int) -> Measured:
        """A build with no cache, pushed to ``registry``."""
        ...

    def noop(self, case: Case, registry: str, n: int) -> Measured:
        """The same build again (no push)."""
        ...

    def changed(self, case: Case, registry: str, n: int) -> Measured:
        """The build after one context file changed, pushed to ``registry``."""
        ...

    def finish(self) -> None:
        """Drop what this tool kept for the case."""
        ...


class Pybuild:
    """``pybuild build`` in a fresh store per cold build (copied from one holding only the
    base images, their layers unpacked)."""

    name = "pybuild"

    def __init__(self, template: PybuildTool, workdir: Path) -> None:
        self.template = template
        self.workdir = workdir
        self.root = workdir / "pybuild-root"
        self.env = {**os.environ, "PYBUILD_NO_DAEMON": "1"}

    def _argv(self, dockerfile: Path, context: Path, tag: str, options: Sequence[str],
              registry: str | None) -> list[str]:
        argv = [*pybuild_command(), "--root", str(self.root), "build", "--progress", "plain",
                "-t", tag, *options, "-f", str(dockerfile)]
        if registry is not None:
            argv += ["--push", "--insecure-registry", registry]
        return [*argv, str(context)]

    def _tag(self, case: Case, registry: str) -> str:
        return f"{registry}/bench/{case.name}:1"

    def cold(self, case: Case, registry: str, n: int) -> Measured:
        """See :class:`Tool`."""
        shutil.rmtree(self.root, ignore_errors=True)
        self.template.copy_to(self.root)
        parts = []
        if case.parent is not None:
            dockerfile, context, tag = case.parent
            parts.append(measure(self._argv(dockerfile, context, tag, (), None), self.workdir,
                                 self.env))
        parts.append(measure(self._argv(case.dockerfile, case.context, self._tag(case, registry),
                                        case.options, registry), self.workdir, self.env))
        return total(parts)

    def noop(self, case: Case, registry: str, n: int) -> Measured:
        """See :class:`Tool`."""
        return measure(self._argv(case.dockerfile, case.context, self._tag(case, registry),
                                  case.options, None), self.workdir, self.env)

    def changed(self, case: Case, registry: str, n: int) -> Measured:
        """See :class:`Tool`."""
        return measure(self._argv(case.dockerfile, case.context, self._tag(case, registry),
                                  case.options, registry), self.workdir, self.env)

    def finish(self) -> None:
        """See :class:`Tool`."""
        shutil.rmtree(self.root, ignore_errors=True)


class PybuildDaemon(Pybuild):
    """The same commands through a ``pybuild daemon`` started for the bench, as buildctl
    goes through a warm buildkitd (the RSS shown is the client's, so none is)."""

    name = "pybuild daemon"

    def __init__(self, template: PybuildTool, workdir: Path) -> None:
        super().__init__(template, workdir)
        self.env = {k: v for k, v in os.environ.items() if k != "PYBUILD_NO_DAEMON"}
        self.env["PYBUILD_DAEMON_DIR"] = str(workdir / "pybuild-daemon")
        run([*pybuild_command(), "daemon", "start"], timeout=120, env=self.env)

    def cold(self, case: Case, registry: str, n: int) -> Measured:
        """See :class:`Tool`."""
        return replace(super().cold(case, registry, n), rss=None)

    def noop(self, case: Case, registry: str, n: int) -> Measured:
        """See :class:`Tool`."""
        return replace(super().noop(case, registry, n), rss=None)

    def changed(self, case: Case, registry: str, n: int) -> Measured:
        """See :class:`Tool`."""
        return replace(super().changed(case, registry, n), rss=None)

    def stop(self) -> None:
        """Stop the daemon."""
        subprocess.run([*pybuild_command(), "daemon", "stop"], capture_output=True,
                       timeout=120, env=self.env)


def _buildctl_options(options: Sequence[str]) -> list[str]:
    """docker-style ``--build-arg``/``--target``/``--secret`` as buildctl options."""
    out: list[str] = []
    it = iter(options)
    for flag in it:
        value = next(it)
        if flag == "--build-arg":
            out += ["--opt", f"build-arg:{value}"]
        elif flag == "--target":
            out += ["--opt", f"target={value}"]
        elif flag == "--secret":
            out += ["--secret", value]
        else:
            raise ValueError(f"no buildctl spelling for {flag}")
    return out


class Buildkit:
    """BuildKit v0.32.2: ``buildctl build`` against a ``buildkitd`` started by ``bk start``
    in a directory of its own, base images through a docker.io mirror of ours."""

    name = "BuildKit"

    def __init__(self, bk: Path, workdir: Path, mirror: str) -> None:
        self.bk = bk
        self.bin = bk.parent
        self.dir = Path(tempfile.mkdtemp(prefix="speed-bk-", dir="/tmp"))
        self.mirror = mirror
        self.workdir = workdir
        # `bk start` pushes docker's busybox/debian to the mirror when the mirror does not
        # answer its manifest probe: make it see no docker, so the mirror keeps our bases
        nodocker = self.dir / "nodocker"
        nodocker.mkdir()
        (nodocker / "docker").write_text("#!/bin/sh\nexit 1\n")
        (nodocker / "docker").chmod(0o755)
        self.env = {"BK_DIR": str(self.dir), "BK_MIRROR": mirror,
                    "PATH": f"{nodocker}:{os.environ['PATH']}"}
        run([str(bk), "start"], timeout=120, env=self.env)
        self._warm_up()

    def _warm_up(self) -> None:
        """Pull the base images once, as a warm daemon has them."""
        for base in ("busybox", "debian:bookworm"):
            ctx = self.workdir / "bk-warm-up"
            shutil.rmtree(ctx, ignore_errors=True)
            ctx.mkdir()
            (ctx / "Dockerfile").write_text(f"FROM {base}\nRUN true\n")
            run(self._argv(ctx / "Dockerfile", ctx, "type=image,name=warm-up,push=false", (),
                           False), timeout=TIMEOUT)
            shutil.rmtree(ctx, ignore_errors=True)

    def _argv(self, dockerfile: Path, context: Path, output: str, options: Sequence[str],
              no_cache: bool) -> list[str]:
        argv = [str(self.bin / "buildctl"), "--addr", f"unix://{self.dir}/buildkitd.sock",
                "build", "--progress=plain", "--frontend", "dockerfile.v0",
                "--local", f"context={context}", "--local", f"dockerfile={dockerfile.parent}",
                "--opt", f"filename={dockerfile.name}", "--opt", "cmdline=builtin",
                *_buildctl_options(options), "--output", output]
        return [*argv, "--no-cache"] if no_cache else argv

    @staticmethod
    def _image(name: str, push: bool) -> str:
        return f"type=image,name={name},push={'true' if push else 'false'}" + (
            ",registry.insecure=true" if push else "")

    def cold(self, case: Case, registry: str, n: int) -> Measured:
        """See :class:`Tool`."""
        parts = []
        if case.parent is not None:
            dockerfile, context, tag = case.parent
            parts.append(measure(self._argv(dockerfile, context,
                                            self._image(f"{self.mirror}/{tag}", True), (),
                                            True), self.workdir))
        parts.append(measure(self._argv(case.dockerfile, case.context, self._image(
            f"{registry}/bench/{case.name}:1", True), case.options, True), self.workdir))
        return total(parts, rss=False)

    def noop(self, case: Case, registry: str, n: int) -> Measured:
        """See :class:`Tool`."""
        return total([measure(self._argv(case.dockerfile, case.context, self._image(
            f"{registry}/bench/{case.name}:1", False), case.options, False), self.workdir)],
            rss=False)

    def changed(self, case: Case, registry: str, n: int) -> Measured:
        """See :class:`Tool`."""
        return total([measure(self._argv(case.dockerfile, case.context, self._image(
            f"{registry}/bench/{case.name}:1", True), case.options, False), self.workdir)],
            rss=False)

    def finish(self) -> None:
        """See :class:`Tool`."""

    def stop(self) -> None:
        """Stop the buildkitd this bench started and remove its state."""
        subprocess.run([str(self.bk), "stop"], capture_output=True, timeout=120, env={
            **os.environ, **self.env})
        subprocess.run(["umount", "-R", "-l", str(self.dir / "state")], capture_output=True,
                       timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


class DockerBuildkit:
    """docker's BuildKit (``DOCKER_BUILDKIT=1 docker build`` + ``docker push``), when today's
    BuildKit is not at hand."""

    name = "docker BuildKit"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = {"DOCKER_BUILDKIT": "1"}
        self.tags: list[str] = []

    def _argv(self, dockerfile: Path, context: Path, tag: str, options: Sequence[str],
              no_cache: bool) -> list[str]:
        argv = [DOCKER, "build", "--progress", "plain", "-t", tag, *options]
        if no_cache:
            argv.append("--no-cache")
        self.tags.append(tag)
        return [*argv, "-f", str(dockerfile), str(context)]

    def _build_push(self, case: Case, registry: str, no_cache: bool) -> list[Measured]:
        tag = f"{registry}/bench/{case.name}:1"
        return [measure(self._argv(case.dockerfile, case.context, tag, case.options, no_cache),
                        self.workdir, self.env),
                measure([DOCKER, "push", "--quiet", tag], self.workdir)]

    def cold(self, case: Case, registry: str, n: int) -> Measured:
        """See :class:`Tool`."""
        parts = []
        if case.parent is not None:
            dockerfile, context, tag = case.parent
            parts.append(measure(self._argv(dockerfile, context, tag, (), True), self.workdir,
                                 self.env))
        return total([*parts, *self._build_push(case, registry, True)], rss=False)

    def noop(self, case: Case, registry: str, n: int) -> Measured:
        """See :class:`Tool`."""
        tag = f"{registry}/bench/{case.name}:1"
        return total([measure(self._argv(case.dockerfile, case.context, tag, case.options,
                                         False), self.workdir, self.env)], rss=False)

    def changed(self, case: Case, registry: str, n: int) -> Measured:
        """See :class:`Tool`."""
        return total(self._build_push(case, registry, False), rss=False)

    def finish(self) -> None:
        """See :class:`Tool`."""
        for tag in set(self.tags):
            subprocess.run([DOCKER, "rmi", tag], capture_output=True, timeout=120)
        self.tags.clear()


@dataclass
class Row:
    """The figures of one case: per tool and scenario, the runs."""

    runs: dict[tuple[str, str], list[Measured]] = field(default_factory=dict)
    error: str | None = None

    def add(self, tool: str, scenario: str, m: Measured) -> None:
        """Remember one run."""
        self.runs.setdefault((tool, scenario), []).append(m)

    def seconds(self, tool: str, scenario: str) -> float | None:
        """The median, or None."""
        got = self.runs.get((tool, scenario))
        return statistics.median(m.seconds for m in got) if got else None

    def rss(self, tool: str) -> int | None:
        """The largest peak RSS of the tool over every scenario, or None."""
        values = [m.rss for (t, _), ms in self.runs.items() if t == tool for m in ms
                  if m.rss is not None]
        return max(values) if values else None


def run_case(case: Case, tools: Sequence[Tool], workdir: Path, repeat: int) -> Row:
    """Every scenario of ``case`` with every tool, ``repeat`` times, tools interleaved."""
    row = Row()
    for n in range(repeat):
        for tool in tools:
            ctx = workdir / f"ctx-{case.name}"
            shutil.rmtree(ctx, ignore_errors=True)
            shutil.copytree(case.context, ctx, symlinks=True)
            mine = case.with_context(ctx)
            registry: RegistryProcess = distribution(workdir / f"reg-{case.name}").start()
            try:
                row.add(tool.name, "cold", tool.cold(mine, registry.address, n))
                row.add(tool.name, "noop", tool.noop(mine, registry.address, n))
                if mine.change is not None:
                    rewrite(ctx / mine.change, n)
                    row.add(tool.name, "change", tool.changed(mine, registry.address, n))
            except CommandFailed as exc:
                row.error = f"{tool.name}: {exc}"[-2000:]
                return row
            finally:
                tool.finish()
                registry.stop()
                shutil.rmtree(workdir / f"reg-{case.name}", ignore_errors=True)
                shutil.rmtree(ctx, ignore_errors=True)
    return row


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _r(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def print_table(rows: dict[str, Row], peer: str, ours: str = "pybuild") -> None:
    """One line per case: cold, no-op, changed for ``ours`` and the peer with ratios, and
    ``ours``' peak RSS."""
    head = (f"{'case':<13}{'cold':>7}{'peer':>7}{'ratio':>7}  {'no-op':>6}{'peer':>7}"
            f"{'ratio':>7}  {'1 file':>6}{'peer':>7}{'ratio':>7}  {'RSS':>7}")
    print(f"\n{ours}: seconds (median); peer = {peer}; cold and 1-file include the push\n")
    print(head)
    print("-" * len(head))
    for name, row in rows.items():
        if row.error:
            print(f"{name:<13}FAILED: {row.error.splitlines()[-1][:150]}")
            continue
        cells = []
        for scenario in ("cold", "noop", "change"):
            a, b = row.seconds(ours, scenario), row.seconds(peer, scenario)
            cells.append(f"{_s(a):>6}{_s(b):>7}{_r(a, b):>7}")
        rss = row.rss(ours)
        print(f"{name:<13} " + "  ".join(cells)
              + f"  {'-' if rss is None else f'{rss / 1e6:.0f} MB':>7}")
    for name, row in rows.items():
        if row.error:
            print(f"\n{name} failed:\n{row.error}")


def main() -> int:
    """Set up the bases, the mirror and the tools; run every case; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="",
                        help="comma-separated: debian-app and/or example names (default all)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bk", type=Path, default=Path(os.environ.get("BK", DEFAULT_BK)),
                        help="the bk script of BuildKit v0.32.2")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # time pybuild as installed: with .pyc
    os.environ.pop("PYBUILD_NO_DAEMON", None)  # each pybuild tool says where it runs
    wanted = {n for n in args.cases.split(",") if n}
    have_bk = args.bk.is_file() and os.access(args.bk, os.X_OK) and shutil.which("runc")
    if not have_bk:
        print(f"BuildKit v0.32.2 not available ({args.bk} or runc missing): comparing with "
              "docker's BuildKit only\n")
    with tempfile.TemporaryDirectory(prefix="speed-bkbench-", dir="/tmp") as tmp:
        workdir = Path(tmp)
        mirror: RegistryProcess | None = None
        bk: Buildkit | None = None
        daemon: PybuildDaemon | None = None
        try:
            bases = make_base_images(workdir / "bases")
            template = PybuildTool(bases, workdir)
            peer: Tool
            if have_bk:
                mirror = distribution(workdir / "mirror").start()
                store = ["--root", str(template.template)]
                for base in bases.images:
                    name = base.name if ":" in base.name else f"{base.name}:latest"
                    ref = f"{mirror.address}/library/{name}"
                    run([*pybuild_command(), *store, "tag", base.name, ref], timeout=120)
                    run([*pybuild_command(), *store, "push", "--progress=quiet",
                         "--insecure-registry", mirror.address, ref], timeout=600)
                    run([*pybuild_command(), *store, "rmi", ref], timeout=120)
                bk = Buildkit(args.bk, workdir, mirror.address)
                peer = bk
            else:
                load_into_docker(bases)
                peer = DockerBuildkit(workdir)
            ours = Pybuild(template, workdir)
            daemon = PybuildDaemon(template, workdir)
            cases = [make_debian_app(workdir / "debian-app")] if (
                not wanted or "debian-app" in wanted) else []
            examples = [e for e in all_examples() if not wanted or e.name in wanted]
            print(f"{len(cases) + len(examples)} cases, median of {args.repeat}, tools: "
                  f"pybuild (own process), pybuild daemon, {peer.name}\n")
            rows: dict[str, Row] = {}
            for case in cases:
                rows[case.name] = run_case(case, [ours, daemon, peer], workdir, args.repeat)
            for example in examples:
                ours_case, peer_case = example_case(example, False), example_case(example, True)
                row = Row()
                for tool, case in ((ours, ours_case), (daemon, ours_case), (peer, peer_case)):
                    got = run_case(case, [tool], workdir, args.repeat)
                    row.runs.update(got.runs)
                    row.error = row.error or got.error
                rows[example.name] = row
            print_table(rows, peer.name)
            print_table(rows, peer.name, daemon.name)
        except (BaseImageError, CommandFailed) as exc:
            print(f"setup failed: {exc}", file=sys.stderr)
            return 1
        finally:
            if daemon is not None:
                daemon.stop()
            if bk is not None:
                bk.stop()
            if mirror is not None:
                mirror.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
