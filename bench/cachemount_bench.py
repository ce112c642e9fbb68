"""Cache mounts that travel: what a fresh CI runner downloads after a package list changed.

Runner A builds a Debian image whose RUN installs the packages of ``packages.txt`` with
``apt-get`` against Debian's archive (plain HTTP), with ``/var/cache/apt`` and
``/var/lib/apt/lists`` as cache mounts, and exports its build cache. Then one package is
added to the list, and a fresh runner (an empty store but the base image) builds again
importing that cache:

* pybuild, the cache exported with ``cache-mounts=true``: apt finds the packages runner A
  downloaded and the package lists in the restored cache mounts;
* pybuild, the cache exported without them (what BuildKit's cache export holds);
* BuildKit v0.32.2 (``../shared/reference/buildkit/bk``, when present) with
  ``--export-cache``/``--import-cache type=local,mode=max`` and a fresh buildkitd state.

Printed per run: the bytes apt fetched (its ``Fetched ...`` lines, update and install) and
the wall time of the fresh runner's build, with the ratios against the cache without mounts.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.builder.bases import load_into_pybuild, make_base_images  # noqa: E402

#: ``../shared/reference/buildkit/bk`` from the project root (``--bk`` names another).
BK = ROOT.parent / "shared" / "reference" / "buildkit" / "bk"
TIMEOUT = 1200
DOCKERFILE = """\
FROM debian:bookworm
RUN rm -f /etc/apt/apt.conf.d/docker-clean; \\
    echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' > /etc/apt/apt.conf.d/keep
COPY packages.txt /packages.txt
RUN --mount=type=cache,target=/var/cache/apt,id=apt-cache,sharing=locked \\
    --mount=type=cache,target=/var/lib/apt/lists,id=apt-lists,sharing=locked \\
    apt-get update && apt-get install -y --no-install-recommends $(cat /packages.txt)
"""
_FETCHED = re.compile(r"Fetched ([\d,.]+) ([kMG]?B) in")
_UNITS = {"B": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3}


def fetched_bytes(output: str) -> int:
    """The sum of apt's ``Fetched N kB in ...`` lines."""
    return int(sum(float(n.replace(",", "")) * _UNITS[u] for n, u in _FETCHED.findall(output)))


def _run(argv: list[str], env: dict[str, str] | None = None) -> tuple[str, float]:
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                          env={**os.environ, **(env or {})})
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr, seconds


def pybuild_runner(work: Path, bases_dir: Path, name: str, ctx: Path, *flags: str
                   ) -> tuple[int, float]:
    """A fresh store with the base images, one build with ``flags``: bytes fetched, seconds."""
    pybuild = [str(ROOT / ".venv" / "bin" / "pybuild")]
    root = work / name
    shutil.copytree(bases_dir, root, symlinks=True)
    out, seconds = _run([*pybuild, "--root", str(root), "build", "--progress=plain",
                         "-t", f"bench-{name}:1", *flags, str(ctx)])
    return fetched_bytes(out), seconds


def buildkit_runs(bk: Path, work: Path, first: Path, second: Path) -> tuple[int, float] | None:
    """Runner A then a fresh runner with BuildKit; None when ``bk`` is not there."""
    if not bk.exists():
        print(f"({bk} not found: no BuildKit run)")
        return None
    cache = work / "bk-cache"
    result = None
    for n, ctx in enumerate((first, second)):
        env = {"BK_DIR": str(work / f"bk-state-{n}")}
        _run([str(bk), "start"], env)
        try:
            args = ["--export-cache", f"type=local,dest={cache},mode=max"] if n == 0 else \
                ["--import-cache", f"type=local,src={cache}"]
            out, seconds = _run([str(bk), "build", str(ctx), str(work / f"bk-{n}.tar"),
                                 "--progress=plain", *args], env)
            result = fetched_bytes(out), seconds
        finally:
            subprocess.run([str(bk), "stop"], env={**os.environ, **env}, capture_output=True,
                           timeout=120)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", default="curl,less", help="runner A's packages")
    parser.add_argument("--added", default="jq", help="the package the change adds")
    parser.add_argument("--no-buildkit", action="store_true", help="skip the BuildKit run")
    parser.add_argument("--bk", type=Path, default=BK, help=f"BuildKit's bk script ({BK})")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cachemount-bench-") as tmp:
        work = Path(tmp)
        bases = make_base_images(work / "bases")
        template = work / "template"
        load_into_pybuild(bases, template, [str(ROOT / ".venv" / "bin" / "pybuild")])
        first, second = work / "ctx-a", work / "ctx-b"
        for ctx, packages in ((first, args.packages), (second, f"{args.packages},"
                                                               f"{args.added}")):
            ctx.mkdir()
            (ctx / "Dockerfile").write_text(DOCKERFILE)
            (ctx / "packages.txt").write_text(packages.replace(",", "\n") + "\n")
        with_mounts, without = work / "cache-mounts", work / "cache-plain"
        a_bytes, a_seconds = pybuild_runner(
            work, template, "runner-a", first,
            "--cache-to", f"type=local,dest={with_mounts},mode=max,cache-mounts=true",
            "--cache-to", f"type=local,dest={without},mode=max")
        print(f"runner A (cold, {args.packages}): fetched {a_bytes / 1e6:.2f} MB in "
              f"{a_seconds:.1f} s")
        rows = [("pybuild, cache-mounts=true", *pybuild_runner(
                    work, template, "runner-b", second,
                    "--cache-from", f"type=local,src={with_mounts}")),
                ("pybuild, cache without mounts", *pybuild_runner(
                    work, template, "runner-c", second,
                    "--cache-from", f"type=local,src={without}"))]
        if not args.no_buildkit:
            bk = buildkit_runs(args.bk, work, first, second)
            if bk is not None:
                rows.append(("BuildKit v0.32.2, cache mode=max", *bk))
        base_bytes, base_seconds = rows[1][1], rows[1][2]
        print(f"fresh runner after adding {args.added}:")
        print(f"  {'':34} {'fetched':>10} {'ratio':>6} {'seconds':>8} {'ratio':>6}")
        for name, fetched, seconds in rows:
            print(f"  {name:34} {fetched / 1e6:8.2f}MB {fetched / max(base_bytes, 1):6.2f} "
                  f"{seconds:8.1f} {seconds / base_seconds:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
