"""The scaled-out registry side by side in one run, all on loopback and on one Ceph RGW and
one PostgreSQL started here (registry.testing.engines):

* ``one``: one ``registry serve`` on S3 + PostgreSQL;
* ``one-lb``: the same behind HAProxy (what the balancer itself costs);
* ``three``: three of them (one bucket prefix, one database) behind HAProxy
  (registry.testing.balancer: round-robin, no stickiness, health checks);
* ``distribution``: CNCF distribution 2.8 (Debian ``docker-registry``) with its s3 driver on
  a bucket of its own on the same RGW.

For each: skopeo pushes then pulls a ``--mb`` MB image of ``--layers`` random layers (wall
time); ``wrk`` on a manifest GET and ``hey`` on a blob HEAD, ``--seconds`` each with 32
connections (req/s, p99); the peak RSS of each replica's process tree. Then the ratios
against the targets.

    python bench/registry_ha_bench.py [--mb 300] [--layers 4] [--seconds 10] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from loadgen import hey_head, wrk  # noqa: E402
from registry_bench import OCI_MANIFEST, make_layout, peak_rss, timed  # noqa: E402
from s3_bench import distribution_on_s3  # noqa: E402

from registry.testing import engines  # noqa: E402
from registry.testing.balancer import running as running_balancer  # noqa: E402
from registry.testing.processes import RegistryProcess, ours  # noqa: E402

DIST_BUCKET = "distribution"


@contextmanager
def replicas(tmp: Path, name: str, count: int, env: dict[str, str], workers: int,
             balanced: bool) -> Iterator[tuple[str, list[RegistryProcess]]]:
    """``count`` replicas sharing ``env`` (bucket prefix and database); the URL to use (the
    balancer's when ``balanced``) and the processes."""
    with ExitStack() as stack:
        procs = []
        for i in range(count):
            proc = ours(tmp / f"{name}-{i}", workers=workers, env=env)
            proc.start(timeout=60)
            stack.callback(proc.stop)
            procs.append(proc)
        if not balanced:
            yield procs[0].url, procs
            return
        balancer = stack.enter_context(
            running_balancer([p.address for p in procs], tmp / f"{name}-haproxy"))
        yield balancer.url, procs


def measure(url: str, tmp: Path, name: str, layout: Path, layer_digest: str,
            seconds: int) -> dict[str, float]:
    """Push and pull with skopeo, then the two load runs."""
    address = url.removeprefix("http://")
    ref = f"docker://{address}/bench/app:1"
    push = timed(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:bench", ref])
    pull = timed(["skopeo", "copy", "--src-tls-verify=false", ref,
                  f"dir:{tmp / ('pull-' + name)}"])
    get_rps, get_p99 = wrk(f"{url}/v2/bench/app/manifests/1", {"Accept": OCI_MANIFEST},
                           seconds)
    head_rps, head_p99 = hey_head(f"{url}/v2/bench/app/blobs/{layer_digest}", seconds=seconds)
    return {"push": push, "pull": pull, "get_rps": get_rps, "get_p99": get_p99,
            "head_rps": head_rps, "head_p99": head_p99}


def main() -> int:
    """Start the engines, run the three set-ups one after the other, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=300)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers a replica")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="pybuild-habench-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "image").mkdir()
        layout, manifest_digest, layer_digest = make_layout(tmp / "image", args.mb, args.layers)
        print(f"image: {args.layers} layers, {args.mb} MB, manifest {manifest_digest[:19]}; "
              f"{args.workers} worker(s) a replica; one Ceph RGW and one PostgreSQL on loopback; "
              f"{os.cpu_count()} CPUs for everything")
        with engines.running(tmp / "engines") as running:
            assert running.postgres is not None and running.rgw is not None
            rgw = running.rgw
            os.environ.update({"AWS_ACCESS_KEY_ID": rgw.access_key,
                               "AWS_SECRET_ACCESS_KEY": rgw.secret_key})
            os.environ.pop("AWS_CA_BUNDLE", None)
            for name, count, balanced in (("one", 1, False), ("one-lb", 1, True),
                                          ("three", 3, True)):
                env = {**rgw.settings(), "REGISTRY_S3_PREFIX": name,
                       "REGISTRY_ACCESS_LOG": "false",
                       "REGISTRY_METADATA_URL": running.postgres.create_database(name)}
                with replicas(tmp, name, count, env, args.workers, balanced) as (url, procs):
                    r = measure(url, tmp, name, layout, layer_digest, args.seconds)
                    for i, proc in enumerate(procs):
                        r[f"rss{i}"] = peak_rss(proc)
                results[name] = r
                report(name, r)
            engines._create_bucket(rgw.endpoint, DIST_BUCKET, rgw.access_key,
                                   rgw.secret_key)
            dist = distribution_on_s3(tmp / "dist", engines.RgwEngine(
                rgw.directory, rgw.endpoint, DIST_BUCKET, rgw.access_key, rgw.secret_key,
                rgw.pids))
            dist.start(timeout=60)
            try:
                r = measure(dist.url, tmp, "distribution", layout, layer_digest, args.seconds)
                r["rss0"] = peak_rss(dist)
            finally:
                dist.stop()
            results["distribution"] = r
            report("distribution", r)
    one, one_lb, three = results["one"], results["one-lb"], results["three"]
    dist_r = results["distribution"]
    max_rss = max(v for k, v in three.items() if k.startswith("rss"))
    checks = [
        ("manifest GET req/s three/one", three["get_rps"] / one["get_rps"], ">=", 2.5),
        ("manifest GET req/s three/one, both behind HAProxy",
         three["get_rps"] / one_lb["get_rps"], "", 0),
        ("blob HEAD req/s three/one, both behind HAProxy",
         three["head_rps"] / one_lb["head_rps"], "", 0),
        ("manifest GET req/s three/distribution", three["get_rps"] / dist_r["get_rps"], ">=", 1.5),
        ("blob HEAD req/s three/distribution", three["head_rps"] / dist_r["head_rps"], ">=", 1.5),
        ("manifest GET req/s one/distribution", one["get_rps"] / dist_r["get_rps"], "", 0),
        ("blob HEAD req/s one/distribution", one["head_rps"] / dist_r["head_rps"], "", 0),
        ("manifest GET p99 three/distribution", three["get_p99"] / dist_r["get_p99"], "", 0),
        ("blob HEAD p99 three/distribution", three["head_p99"] / dist_r["head_p99"], "", 0),
        ("push time three/distribution", three["push"] / dist_r["push"], "<=", 1.0),
        ("pull time three/distribution", three["pull"] / dist_r["pull"], "<=", 1.0),
        ("push time one/distribution", one["push"] / dist_r["push"], "<=", 1.0),
        ("pull time one/distribution", one["pull"] / dist_r["pull"], "<=", 1.0),
        ("peak RSS of a replica (MB)", max(max_rss, one["rss0"]) / 1e6, "<=", 150),
    ]
    for label, value, op, target in checks:
        verdict = ""
        if op:
            ok = value >= target if op == ">=" else value <= target
            verdict = f"target {op} {target:g}: {'met' if ok else 'MISSED'}"
        print(f"ratio {label:50s} {value:7.2f}  {verdict}")
    print(json.dumps({"results": results,
                      "ratios": {label: value for label, value, _, _ in checks}}))
    return 0


def report(name: str, r: dict[str, float]) -> None:
    """One line of figures for one set-up."""
    rss = " ".join(f"{v / 1e6:.0f}" for k, v in sorted(r.items()) if k.startswith("rss"))
    print(f"  {name:13s} push {r['push']:6.2f} s  pull {r['pull']:6.2f} s  "
          f"manifest GET {r['get_rps']:7.0f}/s p99 {r['get_p99']:6.1f} ms  "
          f"blob HEAD {r['head_rps']:7.0f}/s p99 {r['head_p99']:6.1f} ms  "
          f"peak RSS {rss} MB", flush=True)


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"took {time.monotonic() - started:.0f} s")
    sys.exit(code)
