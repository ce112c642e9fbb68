"""Server-side render time of the web UI's heaviest pages, with the number of requests each
makes to the metadata store, next to the ``/v2/`` API reads of the same data in one run.

One registry application (``create_app``, filesystem storage, SQLite metadata, no
authentication) runs in this process, its metadata store wrapped in a counter. It is
filled through its own ``/v2/`` API with:

* ``bench/tags``: ``--tags`` tags (5,000), each on a manifest of its own (one shared config
  and layer, a distinct annotation);
* ``bench/layers``: one image of ``--layers`` layers (100), its config with one history
  line per layer.

Then, ``--rounds`` times each, in-process through the ASGI app (no network): the tags page
(page 1, a middle page, a filtered page; 50 tags a page), the manifest page of the 100-layer
image, and as the reference the API reads a client makes for the same information
(``GET /v2/bench/tags/tags/list?n=50`` and ``GET`` of the manifest and its config blob).
Prints the median and worst time of each and the metadata-store requests per page; the
target is a median under 300 ms for each page.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", message=".*testclient.*")

import registry.app as registry_app  # noqa: E402
from registry.config import Settings  # noqa: E402
from registry.metadata.backends import open_metadata  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class CountingStore:
    """The metadata store, counting each method called (thread-safe)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls: Counter[str] = Counter()
        self._guard = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._store, name)
        if not callable(found):
            return found

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._guard:
                self.calls[name] += 1
            return found(*args, **kwargs)

        return counted

    def reset(self) -> Counter[str]:
        """The counts so far, and start again."""
        with self._guard:
            done, self.calls = self.calls, Counter()
        return done


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(client: Any, repo: str, data: bytes) -> str:
    digest = sha256(data)
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data,
                    headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return digest


def put_manifest(client: Any, repo: str, ref: str, doc: dict[str, Any]) -> str:
    body = json.dumps(doc).encode()
    r = client.put(f"/v2/{repo}/manifests/{ref}", content=body,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    return sha256(body)


def fill(client: Any, tags: int, layers: int) -> str:
    """Push both repositories; the digest of the many-layer image."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = b"layer bytes\n" * 1000
    c_digest, l_digest = push_blob(client, "bench/tags", config), \
        push_blob(client, "bench/tags", layer)
    started = time.perf_counter()
    for i in range(tags):
        put_manifest(client, "bench/tags", f"v{i:05d}", {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": c_digest, "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": l_digest, "size": len(layer)}],
            "annotations": {"bench.index": str(i)}})
    print(f"pushed {tags} tags in {time.perf_counter() - started:.1f} s")
    blobs = [f"layer {i}\n".encode() * (100 + i) for i in range(layers)]
    history = [{"created": "2026-01-01T00:00:00Z",
                "created_by": f"RUN step {i} && echo {'x' * 40}"} for i in range(layers)]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"],
                                    "Labels": {f"l{i}": str(i) for i in range(20)}},
                         "rootfs": {"type": "layers",
                                    "diff_ids": [sha256(b) for b in blobs]},
                         "history": history}).encode()
    push_blob(client, "bench/layers", config)
    for data in blobs:
        push_blob(client, "bench/layers", data)
    return put_manifest(client, "bench/layers", "big", {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(b), "size": len(b)}
                   for b in blobs]})


def measure(rounds: int, request: Callable[[], Any], counter: CountingStore
            ) -> tuple[list[float], int]:
    """Times of ``rounds`` requests (after one warm-up) and the metadata requests of one."""
    request()
    counter.reset()
    request()
    per_request = sum(counter.reset().values())
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = request()
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text[:500]
    return times, per_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=5000)
    parser.add_argument("--layers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    from starlette.testclient import TestClient

    holder: dict[str, CountingStore] = {}

    def counting_metadata(settings: Settings) -> Any:
        holder["store"] = CountingStore(open_metadata(settings))
        return holder["store"]

    registry_app.open_metadata = counting_metadata  # type: ignore[assignment]
    with tempfile.TemporaryDirectory(prefix="ui-bench-") as tmp:
        settings = Settings(root=Path(tmp) / "root", workers=1, access_log=False)
        with TestClient(registry_app.create_app(settings)) as client:
            digest = fill(client, args.tags, args.layers)
            counter = holder["store"]
            middle = max(1, args.tags // 100)
            cases: list[tuple[str, Callable[[], Any]]] = [
                ("tags page 1 (UI)", lambda: client.get("/ui/r/bench/tags")),
                (f"tags page {middle} (UI)",
                 lambda: client.get("/ui/r/bench/tags", params={"page": middle})),
                ("tags filtered 'v0499' (UI)",
                 lambda: client.get("/ui/r/bench/tags", params={"q": "v0499"})),
                ("tags/list n=50 (API)",
                 lambda: client.get("/v2/bench/tags/tags/list", params={"n": 50})),
                (f"manifest of {args.layers} layers (UI)",
                 lambda: client.get(f"/ui/r/bench/layers/-/manifest/{digest}")),
                ("manifest + config (API)", lambda: _api_manifest(client, digest)),
            ]
            print(f"\n{'page':34} {'median ms':>10} {'worst ms':>9} {'metadata req':>13}")
            medians = {}
            for name, request in cases:
                times, requests = measure(args.rounds, request, counter)
                medians[name] = statistics.median(times)
                print(f"{name:34} {1000 * medians[name]:10.1f} {1000 * max(times):9.1f} "
                      f"{requests:13d}")
            ui_tags = medians["tags page 1 (UI)"]
            api_tags = medians["tags/list n=50 (API)"]
            ui_manifest = medians[f"manifest of {args.layers} layers (UI)"]
            api_manifest = medians["manifest + config (API)"]
            print(f"\ntags page / tags list:       {ui_tags / api_tags:.1f}x")
            print(f"manifest page / API reads:   {ui_manifest / api_manifest:.1f}x")
            print("target: every UI page's median under 300 ms: "
                  + ("met" if max(v for k, v in medians.items() if "(UI)" in k) < 0.3
                     else "NOT met"))


def _api_manifest(client: Any, digest: str) -> Any:
    manifest = client.get(f"/v2/bench/layers/manifests/{digest}",
                          headers={"Accept": OCI_MANIFEST})
    config = json.loads(manifest.content)["config"]["digest"]
    return client.get(f"/v2/bench/layers/blobs/{config}")


if __name__ == "__main__":
    main()
