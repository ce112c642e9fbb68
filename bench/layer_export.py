"""Layer export throughput: layerstore's one-pass writer against tar | gzip -6.

Builds a tree of about 500 MB in about 20k files sampled from /usr (copied, so the page cache
holds it), then exports it as a layer with gzip and with zstd, each in a fresh process so its
peak RSS is its own, and runs ``tar -c | gzip -6``, ``tar -c | zstd -3`` and
``tar -c | sha256sum`` on the same tree. Prints MB/s, peak RSS and ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sample_usr(dest: Path, target_bytes: int, target_files: int) -> tuple[int, int]:
    """Copy every k-th regular file of /usr (with its directories) until the targets are met."""
    files = []
    for dirpath, dirnames, filenames in os.walk("/usr"):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if os.path.isfile(path) and not os.path.islink(path) and st.st_size < 12 << 20:
                files.append((path, st.st_size))
    step = max(1, len(files) // target_files)
    total = count = 0
    for path, size in files[::step]:
        if total >= target_bytes:
            break
        out = dest / path.lstrip("/")
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(path, out)
        except OSError:
            continue
        total += size
        count += 1
    return total, count


def run_timed(cmd: list[str] | str, shell: bool = False) -> tuple[float, str]:
    """Wall seconds and standard output of a command."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, shell=shell, stdout=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed: {cmd}")
    return elapsed, proc.stdout


def ours(tree: Path, compression: str, store: Path) -> tuple[float, int]:
    """Run write_tree in a fresh interpreter; its own peak RSS comes from VmHWM (ru_maxrss
    would include the RSS this process had when it forked)."""
    code = (
        "from pathlib import Path;"
        "from layerstore.content.local import LocalStore; from layerstore.diff import write_tree;"
        f"write_tree(Path({str(tree)!r}), LocalStore(Path({str(store)!r})), {compression!r});"
        "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"
    )
    seconds, out = run_timed([sys.executable, "-c", code])
    return seconds, int(out.split()[-1]) * 1024


def peer(pipeline: str) -> tuple[float, int]:
    """Time a shell pipeline (its memory is not reported)."""
    return run_timed(pipeline, shell=True)[0], 0


def main() -> int:
    """Build the tree, run every contender, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500, help="tree size to aim for (MB)")
    parser.add_argument("--files", type=int, default=20000, help="file count to aim for")
    parser.add_argument("--workdir", type=Path, default=None, help="where to build the tree")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="pybuild-bench-") as tmp:
        tree = Path(tmp) / "tree"
        size, count = sample_usr(tree, args.mb << 20, args.files)
        mb = size / 1e6
        print(f"tree: {count} files, {mb:.0f} MB (sampled from /usr)")
        subprocess.run(f"tar -cf - -C {tree} . > /dev/null", shell=True, check=True)
        rows = []
        for name, fn in (
            ("pybuild gzip (ISA-L)", lambda: ours(tree, "gzip", Path(tmp) / "s1")),
            ("pybuild zstd", lambda: ours(tree, "zstd", Path(tmp) / "s2")),
            ("tar -c | gzip -6", lambda: peer(f"tar -cf - -C {tree} . | gzip -6 >/dev/null")),
            ("tar -c | zstd -3", lambda: peer(f"tar -cf - -C {tree} . | zstd -3 -q >/dev/null")),
            ("tar -c | sha256sum", lambda: peer(f"tar -cf - -C {tree} . | sha256sum")),
        ):
            seconds, rss = fn()
            rows.append((name, seconds, rss))
            memory = f"peak RSS {rss / 1e6:6.1f} MB" if rss else ""
            print(f"  {name:24s} {seconds:7.2f} s  {mb / seconds:8.1f} MB/s  {memory}")
        t = {name: s for name, s, _ in rows}
        gz, zs = t["pybuild gzip (ISA-L)"], t["pybuild zstd"]
        print(f"ratio pybuild gzip / tar|gzip -6 : {t['tar -c | gzip -6'] / gz:.2f}x faster"
              " (target >= 3x)")
        print(f"ratio pybuild zstd / tar|zstd -3 : {t['tar -c | zstd -3'] / zs:.2f}x")
        print(f"pybuild gzip vs hashing ceiling  : {t['tar -c | sha256sum'] / gz:.2f}"
              " of tar|sha256sum speed")
        peak = max(rss for name, _, rss in rows if name.startswith("pybuild"))
        print(f"pybuild peak RSS                 : {peak / 1e6:.1f} MB (target well under 200 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
