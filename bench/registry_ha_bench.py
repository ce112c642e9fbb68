"""The scaled-out registry side by side in one run, all on loopback and on one Ceph RGW and
one PostgreSQL started here (registry.testing.engines):

* ``one``: one ``registry serve`` on S3 + PostgreSQL;
* ``one-lb``: the same behind HAProxy (what the balancer itself costs);
* ``three``: three of them (one bucket prefix, one database) behind HAProxy
  (round-robin, every request balanced on its own, health checks);
* ``distribution``: CNCF distribution 2.8 (Debian ``docker-registry``) with its s3 driver on
  a bucket of its own on the same RGW.

For each: skopeo pushes then pulls a ``--mb`` MB image of ``--layers`` random layers (wall
time); ``wrk`` on a manifest GET by tag and ``hey`` on a blob HEAD, ``--seconds`` each with
32 connections (req/s, p99); the peak RSS of each replica's process tree. Our set-ups run
the two load tests twice: unconstrained (every process shares the machine's CPUs) and with
every replica in a cgroup of its own limited to ``--cpu-budget`` CPUs, as separate hosts of
one size would be: the budget rows show whether replicas share a bottleneck (PostgreSQL,
the balancer, a lock), the unconstrained rows the whole machine's limit. Then the ratios
against the targets.

The balancer keeps its server connections alive and reuses them (``http-reuse always``, as
a production HAProxy does by default); ``--server-close`` runs it as the tests do
(``option http-server-close``: a new server connection per request).

    python bench/registry_ha_bench.py [--mb 300] [--layers 4] [--seconds 10] [--workers 1]
                                      [--cpu-budget 0.25] [--server-close]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cpubudget import CpuBudget, cpu_budget  # noqa: E402
from loadgen import hey_head, wrk  # noqa: E402
from registry_bench import OCI_MANIFEST, make_layout, peak_rss, timed  # noqa: E402
from s3_bench import distribution_on_s3  # noqa: E402

from registry.testing import balancer as lb  # noqa: E402
from registry.testing import engines  # noqa: E402
from registry.testing.processes import RegistryProcess, free_port, ours  # noqa: E402

DIST_BUCKET = "distribution"
Figures = dict[str, float]


@contextmanager
def keepalive_balancer(backends: list[str], directory: Path) -> Iterator[lb.Balancer]:
    """HAProxy configured as :mod:`registry.testing.balancer` does, except that server
    connections are kept alive and shared (``option http-keep-alive``, ``http-reuse
    always``); without ``prefer-last-server`` every request is still balanced round-robin
    on its own."""
    directory.mkdir(parents=True)
    port = free_port()
    text = lb.config(backends, directory, host="127.0.0.1", port=port)
    closing = "    option http-server-close\n"
    if closing not in text:
        raise RuntimeError("the balancer's configuration changed: no http-server-close")
    cfg = directory / lb.CONFIG_FILE
    cfg.write_text(text.replace(closing, "    option http-keep-alive\n    http-reuse always\n"))
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    with (directory / lb.LOG_FILE).open("ab") as out:
        proc = subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    balancer = lb.Balancer(directory, "127.0.0.1", port, tuple(backends), proc.pid)
    try:
        deadline = time.monotonic() + 30
        while not (directory / lb.ADMIN_SOCKET).exists() or not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start; see {directory / lb.LOG_FILE}")
            time.sleep(0.05)
        balancer.wait_servers(len(backends))
        yield balancer
    finally:
        balancer.stop()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def served(balancer: lb.Balancer) -> list[int]:
    """Requests each backend answered so far (HAProxy's per-server ``req_tot``)."""
    lines = balancer.command("show stat").splitlines()
    header = lines[0].lstrip("# ").split(",")
    counts = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == lb.BACKEND and row.get("svname", "").startswith("r"):
            counts[row["svname"]] = int(row.get("req_tot") or row.get("stot") or 0)
    return [counts.get(lb.Balancer.server_name(i), 0) for i in range(len(balancer.backends))]


@contextmanager
def replicas(tmp: Path, name: str, count: int, env: dict[str, str], workers: int,
             balanced: bool, server_close: bool
             ) -> Iterator[tuple[str, list[RegistryProcess], lb.Balancer | None]]:
    """``count`` replicas sharing ``env`` (bucket prefix and database); the URL to use (the
    balancer's when ``balanced``), the processes and the balancer."""
    with ExitStack() as stack:
        procs = []
        for i in range(count):
            proc = ours(tmp / f"{name}-{i}", workers=workers, env=env)
            proc.start(timeout=60)
            stack.callback(proc.stop)
            procs.append(proc)
        if not balanced:
            yield procs[0].url, procs, None
            return
        if server_close:
            balancer = stack.enter_context(
                lb.running([p.address for p in procs], tmp / f"{name}-haproxy"))
        else:
            balancer = stack.enter_context(
                keepalive_balancer([p.address for p in procs], tmp / f"{name}-haproxy"))
        yield balancer.url, procs, balancer


def push_pull(url: str, tmp: Path, name: str, layout: Path) -> Figures:
    """skopeo push, then pull (wall time)."""
    address = url.removeprefix("http://")
    ref = f"docker://{address}/bench/app:1"
    push = timed(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:bench", ref])
    pull = timed(["skopeo", "copy", "--src-tls-verify=false", ref,
                  f"dir:{tmp / ('pull-' + name)}"])
    return {"push": push, "pull": pull}


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (PostgreSQL's backends under the postmaster)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        out.append(todo.pop())
        todo.extend(children.get(out[-1], ()))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by ``pids``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


Groups = dict[str, list[int]]


def groups_of(procs: list[RegistryProcess], postgres: int | None = None,
              balancer: lb.Balancer | None = None) -> Groups:
    """The processes whose CPU time the load runs account per request: the replicas (or the
    peer), PostgreSQL's, HAProxy."""
    groups = {"replicas": [pid for proc in procs for pid in proc.pids()]}
    if postgres is not None:
        groups["postgres"] = descendants(postgres)
    if balancer is not None:
        groups["haproxy"] = [balancer.pid]
    return groups


def load(url: str, layer_digest: str, seconds: int, groups: Groups,
         suffix: str = "") -> Figures:
    """The manifest GET and blob HEAD load runs: req/s, p99 (ms) and the CPU time per
    request (µs) of each group of processes."""
    out: Figures = {}
    for kind, run in (
        ("get", lambda: wrk(f"{url}/v2/bench/app/manifests/1", {"Accept": OCI_MANIFEST},
                            seconds)),
        ("head", lambda: hey_head(f"{url}/v2/bench/app/blobs/{layer_digest}",
                                  seconds=seconds)),
    ):
        before = {name: cpu_seconds(pids) for name, pids in groups.items()}
        rps, p99 = run()
        out[f"{kind}_rps{suffix}"] = rps
        out[f"{kind}_p99{suffix}"] = p99
        for name, pids in groups.items():
            used = cpu_seconds(pids) - before[name]
            out[f"{kind}_cpu_{name}{suffix}"] = used / max(rps * seconds, 1) * 1e6
    return out


def budgeted(name: str, url: str, layer_digest: str, seconds: int,
             procs: list[RegistryProcess], groups: Groups, cpus: float
             ) -> tuple[Figures, str]:
    """The load runs again with every replica in a CPU budget of its own; the figures and
    the budget's description."""
    with ExitStack() as stack:
        budgets: list[CpuBudget] = []
        for i, proc in enumerate(procs):
            budget = stack.enter_context(cpu_budget(f"pybuild-habench-{os.getpid()}-{name}-{i}",
                                                    cpus))
            for pid in proc.pids():
                budget.add(pid)
            budgets.append(budget)
        figures = load(url, layer_digest, seconds, groups, "_b")
        throttled = [b.throttled() for b in budgets]
        figures["throttled_b"] = min(t / p if p else 0.0 for p, t in throttled)
        return figures, budgets[0].describe()


def main() -> int:
    """Start the engines, run the set-ups one after the other, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=300)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers a replica")
    parser.add_argument("--cpu-budget", type=float, default=0.25, metavar="CPUS",
                        help="CPUs each replica gets in the budget rows (default 0.25)")
    parser.add_argument("--server-close", action="store_true",
                        help="a new balancer-to-replica connection per request")
    args = parser.parse_args()
    results: dict[str, Figures] = {}
    budget = ""
    with tempfile.TemporaryDirectory(prefix="pybuild-habench-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "image").mkdir()
        layout, manifest_digest, layer_digest = make_layout(tmp / "image", args.mb, args.layers)
        print(f"image: {args.layers} layers, {args.mb} MB, manifest {manifest_digest[:19]}; "
              f"{args.workers} worker(s) a replica; one Ceph RGW and one PostgreSQL on loopback; "
              f"{os.cpu_count()} CPUs for everything; balancer "
              f"{'closes' if args.server_close else 'keeps alive'} server connections")
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
                with replicas(tmp, name, count, env, args.workers, balanced,
                              args.server_close) as (url, procs, balancer):
                    r = push_pull(url, tmp, name, layout)
                    groups = groups_of(procs, engines.postmaster_pid(running.postgres),
                                       balancer)
                    r.update(load(url, layer_digest, args.seconds, groups))
                    figures, budget = budgeted(name, url, layer_digest, args.seconds, procs,
                                               groups, args.cpu_budget)
                    r.update(figures)
                    if balancer is not None:
                        for i, n in enumerate(served(balancer)):
                            r[f"served{i}"] = n
                    for i, proc in enumerate(procs):
                        r[f"rss{i}"] = peak_rss(proc)
                results[name] = r
                report(name, r, budget)
            engines._create_bucket(rgw.endpoint, DIST_BUCKET, rgw.access_key,
                                   rgw.secret_key)
            dist = distribution_on_s3(tmp / "dist", engines.RgwEngine(
                rgw.directory, rgw.endpoint, DIST_BUCKET, rgw.access_key, rgw.secret_key,
                rgw.pids))
            dist.start(timeout=60)
            try:
                r = push_pull(dist.url, tmp, "distribution", layout)
                r.update(load(dist.url, layer_digest, args.seconds, groups_of([dist])))
                r["rss0"] = peak_rss(dist)
            finally:
                dist.stop()
            results["distribution"] = r
            report("distribution", r, "")
    checks = ratios(results)
    print(f"budget rows: each replica limited to {budget}")
    for label, value, op, target in checks:
        verdict = ""
        if op:
            ok = value >= target if op == ">=" else value <= target
            verdict = f"target {op} {target:g}: {'met' if ok else 'MISSED'}"
        print(f"ratio {label:58s} {value:7.2f}  {verdict}")
    print(json.dumps({"budget": budget, "results": results,
                      "ratios": {label: value for label, value, _, _ in checks}}))
    return 0


def ratios(results: dict[str, Figures]) -> list[tuple[str, float, str, float]]:
    """``(label, value, comparison, target)`` for every ratio printed (no target: ``""``)."""
    one, one_lb, three = results["one"], results["one-lb"], results["three"]
    dist = results["distribution"]
    max_rss = max(v for k, v in three.items() if k.startswith("rss"))
    return [
        ("manifest GET req/s three/one, per-replica CPU budget", three["get_rps_b"] /
         one["get_rps_b"], ">=", 2.5),
        ("manifest GET req/s three/one, budget, both behind HAProxy",
         three["get_rps_b"] / one_lb["get_rps_b"], "", 0),
        ("blob HEAD req/s three/one, budget", three["head_rps_b"] / one["head_rps_b"], "", 0),
        ("blob HEAD req/s three/one, budget, both behind HAProxy",
         three["head_rps_b"] / one_lb["head_rps_b"], "", 0),
        ("manifest GET p99 three/one, budget", three["get_p99_b"] / one["get_p99_b"], "", 0),
        ("manifest GET req/s three/one, unconstrained", three["get_rps"] / one["get_rps"],
         ">=", 2.5),
        ("manifest GET req/s three/one, unconstrained, both behind HAProxy",
         three["get_rps"] / one_lb["get_rps"], "", 0),
        ("blob HEAD req/s three/one, unconstrained, both behind HAProxy",
         three["head_rps"] / one_lb["head_rps"], "", 0),
        ("manifest GET req/s three/distribution", three["get_rps"] / dist["get_rps"], ">=", 1.5),
        ("blob HEAD req/s three/distribution", three["head_rps"] / dist["head_rps"], ">=", 1.5),
        ("manifest GET req/s one/distribution", one["get_rps"] / dist["get_rps"], "", 0),
        ("blob HEAD req/s one/distribution", one["head_rps"] / dist["head_rps"], "", 0),
        ("manifest GET p99 three/distribution", three["get_p99"] / dist["get_p99"], "", 0),
        ("blob HEAD p99 three/distribution", three["head_p99"] / dist["head_p99"], "", 0),
        ("push time three/distribution", three["push"] / dist["push"], "<=", 1.0),
        ("pull time three/distribution", three["pull"] / dist["pull"], "<=", 1.0),
        ("push time one/distribution", one["push"] / dist["push"], "<=", 1.0),
        ("pull time one/distribution", one["pull"] / dist["pull"], "<=", 1.0),
        ("peak RSS of a replica (MB)", max(max_rss, one["rss0"]) / 1e6, "<=", 150),
    ]


def _cpu(r: Figures, kind: str, suffix: str = "") -> str:
    """``replicas 180 + postgres 60 + haproxy 40 µs`` for one load run."""
    parts = [f"{name} {r[f'{kind}_cpu_{name}{suffix}']:.0f}"
             for name in ("replicas", "postgres", "haproxy")
             if f"{kind}_cpu_{name}{suffix}" in r]
    return " + ".join(parts) + " µs CPU/req"


def report(name: str, r: Figures, budget: str) -> None:
    """The figures of one set-up: unconstrained, then (ours) under the CPU budget."""
    rss = " ".join(f"{v / 1e6:.0f}" for k, v in sorted(r.items()) if k.startswith("rss"))
    served = " / ".join(f"{v:.0f}" for k, v in sorted(r.items()) if k.startswith("served"))
    print(f"  {name:13s} push {r['push']:6.2f} s  pull {r['pull']:6.2f} s  "
          f"peak RSS {rss} MB" + (f"  requests per replica {served}" if served else ""))
    print(f"  {'':13s} unconstrained: manifest GET {r['get_rps']:7.0f}/s p99 "
          f"{r['get_p99']:6.1f} ms ({_cpu(r, 'get')})  blob HEAD {r['head_rps']:7.0f}/s "
          f"p99 {r['head_p99']:6.1f} ms ({_cpu(r, 'head')})", flush=True)
    if "get_rps_b" in r:
        print(f"  {'':13s} CPU budget:    manifest GET {r['get_rps_b']:7.0f}/s p99 "
              f"{r['get_p99_b']:6.1f} ms ({_cpu(r, 'get', '_b')})  blob HEAD "
              f"{r['head_rps_b']:7.0f}/s p99 {r['head_p99_b']:6.1f} ms "
              f"({_cpu(r, 'head', '_b')}); replicas throttled in "
              f"{100 * r['throttled_b']:.0f}%+ of periods", flush=True)


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"took {time.monotonic() - started:.0f} s")
    sys.exit(code)
