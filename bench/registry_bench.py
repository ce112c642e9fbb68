"""Our registry against CNCF distribution (``docker-registry``), side by side in one run.

1. skopeo pushes then pulls a ~300 MB, 4-layer image to/from each: wall time and ratio.
2. 32 connections for 10 s on a manifest GET (wrk) and on a blob HEAD (hey): requests/s,
   p99 latency and ratios.
3. Peak RSS of our server processes under that load.

``--push-only`` times only the skopeo push, ``--rounds`` times each alternating between the
two servers (each round to a fresh, empty server), and prints the best and the median:

    python bench/registry_bench.py --push-only --mb 200 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadgen import hey_head, wrk  # noqa: E402

from layerstore.assembly import assemble_image, history_entry, host_architecture  # noqa: E402
from layerstore.content.local import LocalStore  # noqa: E402
from layerstore.diff import write_tree  # noqa: E402
from layerstore.layout import LayoutEntry, write_layout  # noqa: E402
from layerstore.oci import Image, ImageConfig  # noqa: E402
from registry.testing.processes import RegistryProcess, distribution, ours  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def make_layout(tmp: Path, total_mb: int, layers: int) -> tuple[Path, str, str]:
    """A layout holding one image of ``layers`` layers of random bytes; returns the layout,
    the manifest digest and one layer digest."""
    store = LocalStore(tmp / "store")
    made = []
    for i in range(layers):
        tree = tmp / f"layer{i}"
        tree.mkdir()
        with (tree / "data.bin").open("wb") as f:
            for _ in range(total_mb // layers):
                f.write(os.urandom(1 << 20))
        made.append(write_tree(tree, store, "gzip"))
    image = Image(architecture=host_architecture(), os="linux", config=ImageConfig(),
                  history=tuple(history_entry(f"layer {i}") for i in range(layers)))
    stored = assemble_image(store, image, made)
    layout = tmp / "layout"
    write_layout(layout, store, [LayoutEntry("bench", stored.manifest)])
    return layout, str(stored.manifest.digest), str(made[0].descriptor.digest)


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def peak_rss(proc: RegistryProcess) -> int:
    """Sum of the peak RSS (VmHWM) of the server's processes, in bytes."""
    total = 0
    for pid in proc.pids():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        total += int(match.group(1)) * 1024 if match else 0
    return total


def main() -> int:
    """Run both registries through the same steps and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=300)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--push-only", action="store_true",
                        help="time only skopeo push, --rounds times")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.push_only:
        return push_only(args)
    with tempfile.TemporaryDirectory(prefix="pybuild-regbench-") as tmpdir:
        tmp = Path(tmpdir)
        layout, manifest_digest, layer_digest = make_layout(tmp, args.mb, args.layers)
        print(f"image: {args.layers} layers, {args.mb} MB, manifest {manifest_digest[:19]}")
        servers = {
            "pybuild": ours(tmp / "ours", workers=args.workers),
            "distribution": distribution(tmp / "dist"),
        }
        results: dict[str, dict[str, float]] = {}
        for name, server in servers.items():
            server.start()
            try:
                ref = f"docker://{server.address}/bench/app:1"
                push = timed(["skopeo", "copy", "--dest-tls-verify=false",
                              f"oci:{layout}:bench", ref])
                pull = timed(["skopeo", "copy", "--src-tls-verify=false", ref,
                              f"dir:{tmp / ('pull-' + name)}"])
                manifest_url = f"{server.url}/v2/bench/app/manifests/1"
                blob_url = f"{server.url}/v2/bench/app/blobs/{layer_digest}"
                get_rps, get_p99 = wrk(manifest_url, {"Accept": OCI_MANIFEST}, args.seconds)
                head_rps, head_p99 = hey_head(blob_url, seconds=args.seconds)
                results[name] = {"push": push, "pull": pull, "get_rps": get_rps,
                                 "get_p99": get_p99, "head_rps": head_rps,
                                 "head_p99": head_p99, "rss": peak_rss(server)}
            finally:
                server.stop()
            r = results[name]
            print(f"  {name:13s} push {r['push']:6.2f} s  pull {r['pull']:6.2f} s  "
                  f"manifest GET {r['get_rps']:8.0f}/s p99 {r['get_p99']:6.1f} ms  "
                  f"blob HEAD {r['head_rps']:8.0f}/s p99 {r['head_p99']:6.1f} ms  "
                  f"peak RSS {r['rss'] / 1e6:6.1f} MB")
        o, d = results["pybuild"], results["distribution"]
        ratios = {
            "push time ours/distribution": o["push"] / d["push"],
            "pull time ours/distribution": o["pull"] / d["pull"],
            "manifest GET req/s ours/distribution": o["get_rps"] / d["get_rps"],
            "manifest GET p99 ours/distribution": o["get_p99"] / d["get_p99"],
            "blob HEAD req/s ours/distribution": o["head_rps"] / d["head_rps"],
            "blob HEAD p99 ours/distribution": o["head_p99"] / d["head_p99"],
        }
        for label, value in ratios.items():
            print(f"ratio {label:40s} {value:5.2f}")
        print(json.dumps({"results": results, "ratios": ratios}))
    return 0


def push_only(args: argparse.Namespace) -> int:
    """skopeo push of the same image to both servers, rounds alternating; best and median."""
    with tempfile.TemporaryDirectory(prefix="pybuild-regbench-") as tmpdir:
        tmp = Path(tmpdir)
        layout, manifest_digest, _ = make_layout(tmp, args.mb, args.layers)
        print(f"image: {args.layers} layers, {args.mb} MB, manifest {manifest_digest[:19]}; "
              f"skopeo push, {args.rounds} rounds alternating, filesystem storage")
        times: dict[str, list[float]] = {"pybuild": [], "distribution": []}
        for i in range(args.rounds):
            servers = {"pybuild": ours(tmp / f"ours{i}", workers=args.workers),
                       "distribution": distribution(tmp / f"dist{i}")}
            for name, server in servers.items():
                server.start()
                try:
                    ref = f"docker://{server.address}/bench/app:1"
                    times[name].append(timed(["skopeo", "copy", "--dest-tls-verify=false",
                                              f"oci:{layout}:bench", ref]))
                finally:
                    server.stop()
                shutil.rmtree(tmp / f"{'ours' if name == 'pybuild' else 'dist'}{i}")
    for name, values in times.items():
        print(f"  {name:13s} push best {min(values):6.2f} s  median "
              f"{statistics.median(values):6.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")
    o, d = times["pybuild"], times["distribution"]
    print(f"ratio push time ours/distribution best {min(o) / min(d):5.2f}  median "
          f"{statistics.median(o) / statistics.median(d):5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
