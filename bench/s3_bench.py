"""Blob push and pull through S3 storage, ours and CNCF distribution side by side on one
Ceph RGW started here (registry.testing.engines): a chunked push (PATCHes of ``--chunk``
MiB, then PUT), a monolithic push (one POST), and a full GET of a ``--mib`` MiB blob, best
of ``--rounds`` rounds each, with the ratio distribution/ours (above 1: ours is faster).

    python bench/s3_bench.py [--mib 128] [--chunk 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from registry.testing.engines import REGION, RgwEngine, start_rgw, stop_rgw  # noqa: E402
from registry.testing.processes import RegistryProcess, free_port, ours  # noqa: E402

MIB = 1 << 20


def distribution_on_s3(directory: Path, engine: RgwEngine) -> RegistryProcess:
    """CNCF distribution with its s3 driver on ``engine``'s bucket under ``/dist``."""
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.yml"
    config.write_text("\n".join([
        "version: 0.1",
        "log:", "  level: error", "  accesslog:", "    disabled: true",
        "storage:", "  s3:", f"    accesskey: {engine.access_key}",
        f"    secretkey: {engine.secret_key}", f"    region: {REGION}",
        f"    regionendpoint: {engine.endpoint}", f"    bucket: {engine.bucket}",
        "    rootdirectory: /dist", "    secure: false", "    v4auth: true",
        "  redirect:", "    disable: true",
        "http:", f"  addr: 127.0.0.1:{port}",
    ]) + "\n")
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    return RegistryProcess([binary, "serve", str(config)], "127.0.0.1", port,
                           directory / "distribution.log")


def best(rounds: int, fn: Callable[[], None]) -> float:
    """The shortest of ``rounds`` timed runs of ``fn``."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=128)
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="s3-bench-") as tmp:
        engine = start_rgw(Path(tmp) / "engines")
        servers: dict[str, RegistryProcess] = {}
        try:
            env = {**engine.settings(), "REGISTRY_S3_PREFIX": "ours",
                   "REGISTRY_ACCESS_LOG": "false"}
            os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
            # distribution's AWS SDK refuses a custom CA bundle with its own transport.
            os.environ.pop("AWS_CA_BUNDLE", None)
            servers["ours"] = ours(Path(tmp) / "ours", env=env).start()
            servers["distribution"] = distribution_on_s3(Path(tmp) / "dist", engine).start()
            results: dict[str, dict[str, float]] = {}
            for name, server in servers.items():
                results[name] = run(server.url, args)
        finally:
            for server in servers.values():
                server.stop()
            stop_rgw(engine)
    print(f"blob: {args.mib} MiB, chunks of {args.chunk} MiB, best of {args.rounds}, "
          "one Ceph RGW on loopback")
    for case in ("chunked push", "monolithic push", "pull"):
        o, d = results["ours"][case], results["distribution"][case]
        print(f"{case:16} ours {o:6.2f} s ({args.mib / o:6.1f} MiB/s)   distribution "
              f"{d:6.2f} s ({args.mib / d:6.1f} MiB/s)   distribution/ours {d / o:4.2f}")
    return 0


def put(client: httpx.Client, location: str, digest: str, data: bytes = b"") -> None:
    """Close an upload (the Location may carry distribution's ``_state`` query)."""
    sep = "&" if "?" in location else "?"
    r = client.put(f"{location}{sep}digest={digest}", content=data,
                   headers={"Content-Type": "application/octet-stream"})
    if r.status_code != 201:
        raise SystemExit(f"{client.base_url}: closing the upload answered {r.status_code}: "
                         f"{r.text[:300]}")


def run(url: str, args: argparse.Namespace) -> dict[str, float]:
    """Time the three cases against one registry."""
    out: dict[str, float] = {}
    with httpx.Client(base_url=url, timeout=600) as client:
        def chunked() -> None:
            data = os.urandom(args.mib * MIB)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            repo = f"bench/{uuid.uuid4().hex[:8]}"
            location = client.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
            step = args.chunk * MIB
            for pos in range(0, len(data), step):
                part = data[pos:pos + step]
                r = client.patch(location, content=part, headers={
                    "Content-Range": f"{pos}-{pos + len(part) - 1}",
                    "Content-Type": "application/octet-stream"})
                r.raise_for_status()
                location = r.headers["Location"]
            put(client, location, digest)
            out["repo"], out["digest"] = repo, digest  # type: ignore[assignment]

        def monolithic() -> None:
            data = os.urandom(args.mib * MIB)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            repo = f"bench/{uuid.uuid4().hex[:8]}"
            location = client.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
            put(client, location, digest, data)

        def pull() -> None:
            with client.stream("GET", f"/v2/{out['repo']}/blobs/{out['digest']}") as r:
                r.raise_for_status()
                for _ in r.iter_bytes(MIB):
                    pass

        out["chunked push"] = best(args.rounds, chunked)
        out["monolithic push"] = best(args.rounds, monolithic)
        out["pull"] = best(args.rounds, pull)
    return out


if __name__ == "__main__":
    sys.exit(main())
