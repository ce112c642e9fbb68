"""``registry replicate run`` against ``skopeo copy``, side by side in one run.

A registry of ours holds one image of ``--mb`` MB in ``--layers`` random layers. Each round
copies it to a fresh, empty CNCF distribution (``docker-registry``) twice: once with a
``--to`` replication rule, once with ``skopeo copy``; then runs each again onto the filled
destination (nothing to send: the blobs are found by ``HEAD``). Rounds alternate which tool
goes first; the best and the median of each and their ratios are printed.

    python bench/replication_bench.py --mb 200 --layers 4 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from registry.testing.processes import RegistryProcess, distribution, ours  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPO = "bench/app"


def fill(source: RegistryProcess, mb: int, layers: int) -> None:
    """Push one image of ``layers`` random layers totalling ``mb`` MB into ``source``."""
    import hashlib

    with httpx.Client(base_url=source.url, timeout=300) as client:
        def blob(data: bytes) -> dict[str, object]:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            r = client.post(f"/v2/{REPO}/blobs/uploads/", params={"digest": digest},
                            content=data)
            r.raise_for_status()
            return {"digest": digest, "size": len(data)}

        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        made = [blob(os.urandom((mb << 20) // layers)) for _ in range(layers)]
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                          **blob(config)},
               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **m}
                          for m in made]}
        r = client.put(f"/v2/{REPO}/manifests/v1", content=json.dumps(doc).encode(),
                       headers={"Content-Type": OCI_MANIFEST})
        r.raise_for_status()


def timed(action: Callable[[], None]) -> float:
    """Seconds ``action`` took."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> int:
    """Run the benchmark; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="image size in MB")
    parser.add_argument("--layers", type=int, default=4, help="layers")
    parser.add_argument("--rounds", type=int, default=3, help="rounds")
    args = parser.parse_args()
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        print("skopeo is missing: apt-get install skopeo", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="replication-bench-"))
    env = {**os.environ, "DOCKER_CONFIG": str(tmp / "docker"),
           "PYBUILD_DAEMON_CONFIG": str(tmp / "daemon.json")}
    (tmp / "daemon.json").write_text("{}")
    source = ours(tmp / "source", workers=2).start()
    figures: dict[str, list[float]] = {k: [] for k in ("ours", "skopeo", "ours warm",
                                                        "skopeo warm")}
    try:
        fill(source, args.mb, args.layers)
        cli = [sys.executable, "-m", "registry.cli", "replicate"]
        root = ["--root", str(tmp / "source")]
        for n in range(args.rounds):
            order = ("ours", "skopeo") if n % 2 == 0 else ("skopeo", "ours")
            for who in order:
                dest = distribution(tmp / f"dist-{n}-{who}").start()
                try:
                    if who == "ours":
                        rule = f"bench-{n}"
                        subprocess.run([*cli, "add", *root, rule, "--to", dest.url,
                                        "--local-url", source.url], check=True, env=env,
                                       cwd=ROOT, capture_output=True)

                        def go(rule: str = rule) -> None:
                            subprocess.run([*cli, "run", *root, rule], check=True, env=env,
                                           cwd=ROOT, capture_output=True)
                    else:
                        def go(dest: RegistryProcess = dest) -> None:
                            subprocess.run([skopeo, "copy", "--all", "--src-tls-verify=false",
                                            "--dest-tls-verify=false",
                                            f"docker://{source.address}/{REPO}:v1",
                                            f"docker://{dest.address}/{REPO}:v1"],
                                           check=True, env=env, capture_output=True)
                    figures[who].append(timed(go))
                    figures[f"{who} warm"].append(timed(go))
                finally:
                    dest.stop()
                    shutil.rmtree(tmp / f"dist-{n}-{who}", ignore_errors=True)
    finally:
        source.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{args.mb} MB in {args.layers} layers, {args.rounds} rounds, ours -> "
          "distribution")
    print(f"{'':12} {'best':>8} {'median':>8}")
    for name, values in figures.items():
        print(f"{name:12} {min(values):8.2f} {statistics.median(values):8.2f}")
    for kind in ("", " warm"):
        ours_t, peer_t = figures[f"ours{kind}"], figures[f"skopeo{kind}"]
        print(f"ratio{kind or ' cold'} ours/skopeo: best {min(ours_t) / min(peer_t):.2f}, "
              f"median {statistics.median(ours_t) / statistics.median(peer_t):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
