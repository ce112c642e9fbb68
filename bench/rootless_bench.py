"""Rootless builds of the example Dockerfiles: pybuild rootless against pybuild as root and
against ``buildah bud`` rootless, in one run.

Run as root: it creates an ordinary user for the run (``useradd`` with 1,000,000
subordinate ids, removed at the end, see ``tests/builder/rootlessuser.py``). Three stores
hold the base images (``busybox:latest``, ``debian:bookworm`` from ``tests/builder/bases.py``),
already unpacked:

* pybuild as root: ``pybuild --root R build --no-cache``;
* pybuild rootless: the same command run by the user, on its default store
  (``~/.local/share/pybuild``), entering its user namespace as every command does;
* buildah rootless: ``buildah bud --layers=false --network host`` by the same user, overlay
  storage of its own (``--isolation`` as given; slirp4netns is not usable here, so the
  host network, which is also what pybuild's RUN steps get).

Both pybuild runs use the interpreter the user can start (the same for both), so the ratio
is the cost of the user namespace and nothing else. An example with a parent image (ONBUILD)
counts the parent's build and the child's; BuildKit-only syntax (heredocs) is built by
buildah from the example's ``Dockerfile.peer``. Each build runs ``--repeat`` times,
interleaved across the tools; medians are shown, and the ratios of the summed medians.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.builder.bases import make_base_images  # noqa: E402
from tests.builder.examples import Example, all_examples, build_options  # noqa: E402
from tests.builder.rootlessuser import RootlessUser  # noqa: E402

TOOLS = ("root", "rootless", "buildah")
TIMEOUT = 900


def _builds(example: Example, peer: bool) -> list[list[str]]:
    """The build arguments (after ``build``/``bud``) of the example, its parent first."""
    out = []
    if example.parent is not None:
        out.append(["-t", example.parent.tag, "-f", str(example.parent.dockerfile),
                    str(example.parent.context)])
    dockerfile = (example.peer_dockerfile or example.dockerfile) if peer else example.dockerfile
    out.append(["-t", f"rootless-bench/{example.name}:1", *build_options(example), "-f",
                str(dockerfile), str(example.context)])
    return out


class Bench:
    """The three builders, ready to build (bases loaded and unpacked)."""

    def __init__(self, user: RootlessUser, workdir: Path, isolation: str) -> None:
        self.user = user
        self.root_store = workdir / "root-store"
        self.isolation = isolation
        runtime = user.workdir("xdg-runtime")
        runtime.chmod(0o700)
        storage = user.workdir("buildah")
        self.buildah = ["buildah", "--storage-driver", "overlay", "--root",
                        str(storage / "root"), "--runroot", str(storage / "run")]
        self.buildah_env = {"XDG_RUNTIME_DIR": str(runtime)}

    def root_argv(self, *args: str) -> list[str]:
        """pybuild as root, started by the same interpreter as the user's."""
        return [*self.user.python, "-m", "builder.cli", "--root", str(self.root_store), *args]

    def run_root(self, argv: Sequence[str]) -> None:
        env = self.user.env({"HOME": "/root", "USER": "root", "LOGNAME": "root"})
        proc = subprocess.run(list(argv), capture_output=True, timeout=TIMEOUT, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr.decode()[-3000:]}")

    def prepare(self, archives: Sequence[Path]) -> None:
        """Load the bases into each store and unpack them (a one-step build FROM each)."""
        warm = self.user.base / "warm"
        for archive in archives:
            shared = self.user.share(archive)
            self.run_root(self.root_argv("load", "-i", str(shared)))
            self.user.pybuild("load", "-i", str(shared))
            image_id = self.user.run([*self.buildah, "pull", "-q", f"docker-archive:{shared}"],
                                     env=self.buildah_env).stdout.decode().split()[-1]
            name = "busybox:latest" if "busybox" in archive.name else "debian:bookworm"
            self.user.run([*self.buildah, "tag", image_id, name], env=self.buildah_env)
            ctx = warm / name.replace(":", "-")
            ctx.mkdir(parents=True, exist_ok=True)
            (ctx / "Dockerfile").write_text(f"FROM {name}\nRUN true\n")
            for p in (warm, ctx, ctx / "Dockerfile"):
                p.chmod(0o755 if p.is_dir() else 0o644)
            self.run_root(self.root_argv("build", "-q", str(ctx)))
            self.user.pybuild("build", "-q", str(ctx))

    def build(self, tool: str, example: Example) -> float:
        """Build the example (its parent first) with ``tool``; wall seconds."""
        start = time.perf_counter()
        for args in _builds(example, peer=tool == "buildah"):
            if tool == "root":
                self.run_root(self.root_argv("build", "-q", "--no-cache", *args))
            elif tool == "rootless":
                self.user.pybuild("build", "-q", "--no-cache", *args, timeout=TIMEOUT)
            else:
                self.user.run([*self.buildah, "bud", "-q", "--layers=false", "--network",
                               "host", "--isolation", self.isolation, *args],
                              env=self.buildah_env, timeout=TIMEOUT)
        return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", help="comma-separated example names (default: all)")
    parser.add_argument("--repeat", type=int, default=3, help="builds per tool and example")
    parser.add_argument("--isolation", default="oci", choices=("oci", "chroot"),
                        help="buildah's RUN isolation (default: oci, runc in its namespace)")
    args = parser.parse_args()
    examples = all_examples()
    if args.examples:
        wanted = set(args.examples.split(","))
        examples = [e for e in examples if e.name in wanted]
    with tempfile.TemporaryDirectory(prefix="rootless-bench-") as tmp:
        workdir = Path(tmp)
        bases = make_base_images(workdir / "bases")
        user = RootlessUser.create("pbrb")
        try:
            bench = Bench(user, workdir, args.isolation)
            bench.prepare([b.archive for b in bases.images])
            times: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.repeat):
                for example in examples:
                    for tool in TOOLS:
                        times.setdefault((example.name, tool), []).append(
                            bench.build(tool, example))
        finally:
            user.remove()
    print(f"{'example':<14} {'root s':>8} {'rootless s':>11} {'buildah s':>10} "
          f"{'rootless/root':>14} {'rootless/buildah':>17}")
    totals = dict.fromkeys(TOOLS, 0.0)
    for example in examples:
        med = {tool: statistics.median(times[(example.name, tool)]) for tool in TOOLS}
        for tool in TOOLS:
            totals[tool] += med[tool]
        print(f"{example.name:<14} {med['root']:>8.2f} {med['rootless']:>11.2f} "
              f"{med['buildah']:>10.2f} {med['rootless'] / med['root']:>14.2f} "
              f"{med['rootless'] / med['buildah']:>17.2f}")
    print(f"{'all':<14} {totals['root']:>8.2f} {totals['rootless']:>11.2f} "
          f"{totals['buildah']:>10.2f} {totals['rootless'] / totals['root']:>14.2f} "
          f"{totals['rootless'] / totals['buildah']:>17.2f}")
    print(f"targets: rootless/root <= 1.3, rootless/buildah <= 1.0 (buildah --isolation "
          f"{args.isolation}, {args.repeat} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
