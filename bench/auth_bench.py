"""The cost of token authentication: manifest GET requests/s with auth off and on, side by
side in one run, on the same image in the same data directory.

1. ``registry serve --tls --auth none`` (2 workers): push a small image, then wrk with 32
   connections for 10 s on its manifest.
2. ``registry serve --tls`` (token auth, same root): get a pull token from ``/token``, then
   the same wrk run with ``Authorization: Bearer <token>``.
3. Print both, and the ratio on/off (the target is at least 0.80).

The two runs alternate for ``--rounds`` rounds and the best of each counts: on a small
machine one wrk run varies by 10-20 % from the next, more than what is measured here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import ssl
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadgen import wrk  # noqa: E402

from registry.auth.users import UserStore  # noqa: E402
from registry.testing.processes import RegistryProcess, ours  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPO, TAG = "bench/app", "1"
USER, PASSWORD = "bench", "bench-password"
CONFIG = f"""
[[access]]
repository = "bench/*"
users = ["{USER}"]
actions = ["pull", "push"]
"""


def push_image(c: httpx.Client) -> None:
    """Push a config, one 1 MiB layer and an OCI manifest tagged ``TAG``."""
    blobs = [json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode(),
             os.urandom(1 << 20)]
    digests = ["sha256:" + hashlib.sha256(b).hexdigest() for b in blobs]
    for blob, digest in zip(blobs, digests, strict=True):
        r = c.post(f"/v2/{REPO}/blobs/uploads/", params={"digest": digest}, content=blob)
        r.raise_for_status()
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": digests[0], "size": len(blobs[0])},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": digests[1], "size": len(blobs[1])}]}
    r = c.put(f"/v2/{REPO}/manifests/{TAG}", content=json.dumps(manifest).encode(),
              headers={"Content-Type": OCI_MANIFEST})
    r.raise_for_status()


def client(server: RegistryProcess, root: Path, **kwargs: object) -> httpx.Client:
    """An HTTPS client trusting the server's private CA."""
    context = ssl.create_default_context(cafile=str(root / "tls" / "ca.crt"))
    return httpx.Client(base_url=server.url, transport=httpx.HTTPTransport(verify=context),
                        timeout=60, **kwargs)  # type: ignore[arg-type]


def measure(root: Path, config: Path, workers: int, seconds: int, auth: str
            ) -> tuple[float, float]:
    """Start the server on ``root`` with ``auth`` and time manifest GETs."""
    server = ours(root, workers=workers, tls=True,
                  extra=["--auth", auth, "--config", str(config), "--no-access-log"]).start()
    try:
        headers = {"Accept": OCI_MANIFEST}
        if auth == "none":
            with client(server, root) as c:
                if c.get(f"/v2/{REPO}/manifests/{TAG}").status_code != 200:
                    push_image(c)
        else:
            with client(server, root) as c:
                r = c.get("/token", params={"scope": f"repository:{REPO}:pull"},
                          auth=(USER, PASSWORD))
                r.raise_for_status()
                headers["Authorization"] = f"Bearer {r.json()['token']}"
                check = c.get(f"/v2/{REPO}/manifests/{TAG}", headers=headers)
                assert check.status_code == 200, check.text
        return wrk(f"{server.url}/v2/{REPO}/manifests/{TAG}", headers, seconds)
    finally:
        server.stop()


def main() -> int:
    """Run both configurations and print the figures and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pybuild-authbench-") as tmpdir:
        tmp = Path(tmpdir)
        root = tmp / "root"
        UserStore(root / "auth").add(USER, PASSWORD)
        config = tmp / "config.toml"
        config.write_text(CONFIG)
        results: dict[str, dict[str, float]] = {}
        for round_ in range(1, max(1, args.rounds) + 1):
            for auth in ("none", "token"):
                rps, p99 = measure(root, config, args.workers, args.seconds, auth)
                print(f"  round {round_} auth {auth:5s}  manifest GET {rps:8.0f}/s  "
                      f"p99 {p99:6.1f} ms")
                if rps > results.get(auth, {}).get("rps", 0.0):
                    results[auth] = {"rps": rps, "p99_ms": p99}
        for auth, best in results.items():
            print(f"best auth {auth:5s}  manifest GET {best['rps']:8.0f}/s  "
                  f"p99 {best['p99_ms']:6.1f} ms")
        ratio = results["token"]["rps"] / results["none"]["rps"]
        print(f"ratio manifest GET req/s token/none {ratio:5.2f} (target >= 0.80)")
        print(json.dumps({"results": results, "ratio": ratio}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
