"""Mirror mode against a real upstream (CNCF distribution behind a counting proxy): reads
through the cache, one fetch per blob for concurrent first pulls, streaming while fetching,
tag revalidation, refused writes, metrics and audit events, the upstream down, and bad
settings."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from layerstore.content.local import LocalStore
from registry.audit import query
from registry.audit.events import AuditQuery
from registry.config import Settings
from registry.testing.deadline import time_limit
from registry.testing.processes import RegistryProcess, distribution
from tests.peers import require
from tests.registry.client.test_distribution import PASSWORD, USER, htpasswd
from tests.registry.images import busybox_image, layout_of, multiarch_index
from tests.registry.proxy_env import (
    Upstream,
    busybox_layout,
    mirror,
    push_blob,
    push_busybox,
    start_upstream,
)
from tests.registry.server import REPO_ROOT, error_codes

ACCEPT = ", ".join(("application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json"))
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path
             ) -> Iterator[Upstream]:
    """distribution with library/busybox:latest, behind a counting proxy."""
    up = start_upstream(tmp_path_factory.mktemp("proxy-upstream"), busybox_rootfs)
    yield up
    up.stop()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream
          ) -> Iterator[RegistryProcess]:
    """Our registry (two workers) mirroring the upstream through the counting proxy."""
    proc = mirror(tmp_path_factory.mktemp("proxy-cache") / "root", upstream.proxy.url).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def eager(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream
          ) -> Iterator[RegistryProcess]:
    """A second mirror that revalidates tags on every request (proxy_ttl = 0)."""
    proc = mirror(tmp_path_factory.mktemp("proxy-eager") / "root", upstream.proxy.url, ttl=0,
                  workers=1).start()
    yield proc
    proc.stop()


def pull(client: httpx.Client, repository: str, reference: str) -> tuple[str, dict[str, bytes]]:
    """GET a manifest and every blob it names, checking each digest; the manifest digest
    and the blobs."""
    response = client.get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT})
    assert response.status_code == 200, response.text
    digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
    assert response.headers["docker-content-digest"] == digest
    doc = response.json()
    blobs: dict[str, bytes] = {}
    for desc in (doc["config"], *doc["layers"]):
        got = client.get(f"/v2/{repository}/blobs/{desc['digest']}")
        assert got.status_code == 200, got.text
        assert "sha256:" + hashlib.sha256(got.content).hexdigest() == desc["digest"]
        assert len(got.content) == desc["size"]
        blobs[desc["digest"]] = got.content
    return digest, blobs


def metric(client: httpx.Client, name: str) -> float:
    """The value of one sample on ``/metrics``."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not on /metrics")


def test_a_pull_fetches_once_and_the_next_is_served_from_the_cache(
        cache: RegistryProcess, upstream: Upstream) -> None:
    with time_limit(120), httpx.Client(base_url=cache.url, timeout=60) as client:
        digest, blobs = pull(client, "library/busybox", "latest")
        assert digest == upstream.busybox
        fetched = upstream.proxy.count()
        assert upstream.proxy.count("GET", "/blobs/") == len(blobs)
        again, same = pull(client, "library/busybox", "latest")
        by_digest = client.get(f"/v2/library/busybox/manifests/{digest}",
                               headers={"Accept": ACCEPT})
        assert by_digest.status_code == 200
        assert (again, same) == (digest, blobs)
        assert upstream.proxy.count() == fetched, "the second pull went to the upstream"
        assert metric(client, 'registry_proxy_misses_total{kind="blob"}') >= len(blobs)
        assert metric(client, 'registry_proxy_hits_total{kind="blob"}') >= len(blobs)
        assert metric(client, "registry_proxy_fetched_bytes_total") >= sum(
            len(b) for b in blobs.values())


def test_writes_are_refused_with_unsupported(cache: RegistryProcess,
                                             upstream: Upstream) -> None:
    before = upstream.proxy.count()
    with time_limit(60), httpx.Client(base_url=cache.url, timeout=60) as client:
        answers = [
            client.post("/v2/library/busybox/blobs/uploads/"),
            client.put("/v2/library/busybox/manifests/mine", content=b"{}",
                       headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}),
            client.delete(f"/v2/library/busybox/manifests/{upstream.busybox}"),
        ]
    for answer in answers:
        assert answer.status_code == 405
        assert error_codes(answer) == ["UNSUPPORTED"]
        assert "pull-through cache of upstream proxy_remote" in answer.text
    assert upstream.proxy.count() == before


def test_unknown_content_is_unknown_as_upstream(cache: RegistryProcess) -> None:
    with time_limit(60), httpx.Client(base_url=cache.url, timeout=60) as client:
        manifest = client.get("/v2/library/nothing/manifests/latest")
        blob = client.get("/v2/library/busybox/blobs/sha256:" + "0" * 64)
    assert manifest.status_code == 404 and error_codes(manifest) == ["MANIFEST_UNKNOWN"]
    assert blob.status_code == 404 and error_codes(blob) == ["BLOB_UNKNOWN"]


def test_concurrent_first_pulls_of_a_100_mb_blob_fetch_it_once(
        cache: RegistryProcess, upstream: Upstream) -> None:
    data = random.Random(18).randbytes(100 * MIB)
    digest = push_blob(upstream.registry.url, "library/big", data)
    del data
    results: list[str] = []
    errors: list[BaseException] = []

    def get() -> None:
        try:
            hasher, size = hashlib.sha256(), 0
            with httpx.Client(base_url=cache.url, timeout=120) as client, client.stream(
                    "GET", f"/v2/library/big/blobs/{digest}") as response:
                assert response.status_code == 200, response.read()
                for chunk in response.iter_bytes():
                    hasher.update(chunk)
                    size += len(chunk)
            results.append(f"sha256:{hasher.hexdigest()}")
        except BaseException as exc:
            errors.append(exc)

    with time_limit(300):
        threads = [threading.Thread(target=get) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert results == [digest] * 8
        assert upstream.proxy.count("GET", digest) == 1
        get()
        assert results[-1] == digest and upstream.proxy.count("GET", digest) == 1
    spool = Path(cache.argv[cache.argv.index("--root") + 1]) / "run" / "proxy"
    assert not list(spool.glob(f"*{digest.split(':')[1]}*")), "a finished fetch left files"


def test_a_blob_streams_to_the_first_client_while_it_is_fetched(
        cache: RegistryProcess, upstream: Upstream) -> None:
    data = random.Random(7).randbytes(24 * MIB)
    digest = push_blob(upstream.registry.url, "library/slow", data)
    gate = upstream.proxy.gate(digest, after=8 * MIB)
    with time_limit(120), httpx.Client(base_url=cache.url, timeout=120) as client, \
            client.stream("GET", f"/v2/library/slow/blobs/{digest}") as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(data))
        received = bytearray()
        pieces = response.iter_bytes()
        while len(received) < 4 * MIB:
            received += next(pieces)
        assert gate.reached.wait(60)
        assert not gate.release.is_set(), "the upstream finished before the client got bytes"
        gate.open()
        for piece in pieces:
            received += piece
    assert bytes(received) == data


def test_tags_are_revalidated_after_the_ttl(cache: RegistryProcess, eager: RegistryProcess,
                                            upstream: Upstream, tmp_path: Path,
                                            busybox_rootfs: Path) -> None:
    address = upstream.registry.address
    first, first_digest = busybox_layout(tmp_path / "first", busybox_rootfs,
                                         {"v": b"1\n"})
    second, second_digest = busybox_layout(tmp_path / "second", busybox_rootfs,
                                           {"v": b"2\n"})
    push_busybox(address, first, "library/moving", "latest")
    with time_limit(120), httpx.Client(base_url=cache.url, timeout=60) as lazy, \
            httpx.Client(base_url=eager.url, timeout=60) as keen:
        assert pull(lazy, "library/moving", "latest")[0] == first_digest
        assert pull(keen, "library/moving", "latest")[0] == first_digest
        push_busybox(address, second, "library/moving", "latest")
        before = upstream.proxy.count()
        assert pull(lazy, "library/moving", "latest")[0] == first_digest
        assert upstream.proxy.count() == before, "a tag within its TTL went upstream"
        assert pull(keen, "library/moving", "latest")[0] == second_digest
        assert pull(keen, "library/moving", first_digest)[0] == first_digest


def test_fetches_are_in_the_audit_log(cache: RegistryProcess) -> None:
    settings = Settings(root=Path(cache.argv[cache.argv.index("--root") + 1]))
    deadline = time.monotonic() + 30
    while True:
        events = query(settings, AuditQuery(limit=1000))
        fetches = [e for e in events if e.action == "proxy.fetch"]
        if any(e.repository == "library/busybox" and "blob" in e.detail for e in fetches):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"no proxy.fetch event of library/busybox in {events}")
        time.sleep(0.5)
    manifest = [e for e in fetches if e.detail.startswith("manifest")]
    assert any(e.reference == "latest" for e in manifest)


def test_bad_upstream_credentials_are_refused_naming_the_settings(
        tmp_path: Path, busybox_rootfs: Path) -> None:
    secured = distribution(tmp_path / "secured", htpasswd=htpasswd(tmp_path / "htpasswd"))
    with time_limit(120), secured:
        layout, digest = busybox_layout(tmp_path / "images", busybox_rootfs)
        proc = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds",
                               f"{USER}:{PASSWORD}", f"oci:{layout}:latest",
                               f"docker://{secured.address}/library/busybox:latest"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        refused = serve_once(tmp_path / "refused", REGISTRY_PROXY_REMOTE=secured.url,
                             REGISTRY_PROXY_USERNAME=USER, REGISTRY_PROXY_PASSWORD="wrong")
        assert refused.returncode == 2
        assert "proxy_username/proxy_password" in refused.stderr
        assert "refused the credentials" in refused.stderr
        assert "Traceback" not in refused.stderr
        missing = serve_once(tmp_path / "missing", REGISTRY_PROXY_REMOTE=secured.url)
        assert missing.returncode == 2 and "needs credentials" in missing.stderr
        with mirror(tmp_path / "good", secured.url,
                    env={"REGISTRY_PROXY_USERNAME": USER,
                         "REGISTRY_PROXY_PASSWORD": PASSWORD}) as good, \
                httpx.Client(base_url=good.url, timeout=60) as client:
            assert pull(client, "library/busybox", "latest")[0] == digest


def serve_once(root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``registry serve`` with ``env``, expected to refuse to start."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    return subprocess.run([sys.executable, "-m", "registry.cli", "serve", "--root", str(root),
                           "--addr", "127.0.0.1:1"], capture_output=True, text=True,
                          timeout=60, env={**clean, **env, "PYTHONPATH": str(REPO_ROOT)})


class _NotARegistry(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "9")
        self.end_headers()
        self.wfile.write(b"not here\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("env", "message"), [
    ({"REGISTRY_PROXY_REMOTE": "ftp://upstream.example"},
     "proxy_remote: 'ftp://upstream.example' must be an http:// or https:// URL"),
    ({"REGISTRY_PROXY_REMOTE": "https://upstream.example/v2/library"},
     "proxy_remote: 'https://upstream.example/v2/library' must name the registry's root"),
    ({"REGISTRY_PROXY_REMOTE": "https://user:pw@upstream.example"},
     "proxy_remote: 'upstream.example': credentials do not go in the URL"),
    ({"REGISTRY_PROXY_REMOTE": "http://no-such-upstream.invalid"},
     "proxy_remote http://no-such-upstream.invalid is unreachable"),
    ({"REGISTRY_PROXY_REMOTE": "http://127.0.0.1:5000", "REGISTRY_PROXY_TTL": "-1"},
     "proxy_ttl must not be negative"),
    ({"REGISTRY_PROXY_REMOTE": "http://127.0.0.1:5000", "REGISTRY_PROXY_USERNAME": "u"},
     "proxy_username and proxy_password go together"),
    ({"REGISTRY_PROXY_USERNAME": "u", "REGISTRY_PROXY_PASSWORD": "p"},
     "credentials need an upstream"),
])
def test_bad_settings_are_clear_errors_naming_the_setting(
        tmp_path: Path, env: dict[str, str], message: str) -> None:
    with time_limit(60):
        proc = serve_once(tmp_path / "root", **env)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_an_upstream_that_is_no_registry_is_refused(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotARegistry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with time_limit(60):
            url = f"http://127.0.0.1:{server.server_address[1]}"
            proc = serve_once(tmp_path / "root", REGISTRY_PROXY_REMOTE=url)
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 2
    assert f"upstream proxy_remote {url} is no registry: GET /v2/ answered 404" in proc.stderr


def test_tags_are_listed_as_the_upstream_has_them(cache: RegistryProcess,
                                                   upstream: Upstream) -> None:
    with time_limit(60), httpx.Client(base_url=cache.url, timeout=60) as client:
        listed = client.get("/v2/library/busybox/tags/list")
        unknown = client.get("/v2/library/nothing/tags/list")
    assert listed.status_code == 200 and listed.json() == {"name": "library/busybox",
                                                           "tags": ["latest"]}
    assert unknown.status_code == 404

def test_a_restart_with_bad_settings_loses_nothing_cached(upstream: Upstream,
                                                          tmp_path: Path) -> None:
    root = tmp_path / "root"
    with time_limit(180):
        with mirror(root, upstream.proxy.url, workers=1) as first, \
                httpx.Client(base_url=first.url, timeout=60) as client:
            digest, blobs = pull(client, "library/busybox", "latest")
        for env in ({"REGISTRY_PROXY_REMOTE": "ftp://" + upstream.proxy.url[7:]},
                    {"REGISTRY_PROXY_REMOTE": upstream.proxy.url, "REGISTRY_PROXY_TTL": "x"}):
            refused = serve_once(root, **env)
            assert refused.returncode == 2 and "proxy_" in refused.stderr
        with mirror(root, upstream.proxy.url, workers=1) as again, \
                httpx.Client(base_url=again.url, timeout=60) as client:
            before = upstream.proxy.count()
            assert pull(client, "library/busybox", "latest") == (digest, blobs)
            assert upstream.proxy.count() == before

def test_a_multi_platform_index_pulls_through_the_cache(
        cache: RegistryProcess, upstream: Upstream, tmp_path: Path,
        busybox_rootfs: Path) -> None:
    store = LocalStore(tmp_path / "store")
    images = {arch: busybox_image(store, busybox_rootfs, architecture=arch)
              for arch in ("amd64", "arm64")}
    index = multiarch_index(store, images)
    layout = layout_of(tmp_path / "layout", store, {"multi": index})
    skopeo = require("skopeo")
    with time_limit(300):
        subprocess.run([skopeo, "copy", "--all", "--dest-tls-verify=false",
                        f"oci:{layout}:multi",
                        f"docker://{upstream.registry.address}/library/multi:1"],
                       check=True, capture_output=True, timeout=300)
        out = tmp_path / "out"
        proc = subprocess.run([skopeo, "copy", "--all", "--src-tls-verify=false",
                               f"docker://{cache.address}/library/multi:1", f"oci:{out}:m"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "index.json").read_text())["manifests"][0]["digest"] == str(
        index.digest)
    with httpx.Client(base_url=cache.url, timeout=60) as client:
        for image in images.values():
            digest, _ = pull(client, "library/multi", str(image.manifest.digest))
            assert digest == str(image.manifest.digest)


def test_with_the_upstream_down_the_cache_serves_what_it_holds(
        cache: RegistryProcess, eager: RegistryProcess, upstream: Upstream) -> None:
    with time_limit(180), httpx.Client(base_url=cache.url, timeout=60) as client, \
            httpx.Client(base_url=eager.url, timeout=60) as keen:
        digest, blobs = pull(keen, "library/busybox", "latest")
        assert pull(client, "library/busybox", "latest")[0] == digest
        upstream.stop()
        assert pull(keen, "library/busybox", "latest") == (digest, blobs)
        assert pull(client, "library/busybox", "latest")[0] == digest
        missing = client.get("/v2/library/other/manifests/latest")
        assert missing.status_code == 503 and error_codes(missing) == ["UNAVAILABLE"]
        assert f"upstream proxy_remote {upstream.proxy.url} is unreachable" in missing.text
        blob = client.get("/v2/library/busybox/blobs/sha256:" + "1" * 64)
        assert blob.status_code == 503 and error_codes(blob) == ["UNAVAILABLE"]
        assert metric(keen, "registry_proxy_upstream_errors_total") >= 1
    report = json.loads(missing.text)
    assert report["errors"][0]["code"] == "UNAVAILABLE"
