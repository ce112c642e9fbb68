"""Three stateless replicas (S3 on Ceph RGW, metadata in PostgreSQL, each its own empty
root) behind HAProxy round-robin are one registry: docker and skopeo push and pull through
the balancer, an upload's chunks land on different replicas, concurrent pushes of one blob
or one tag agree, and faults — a replica killed mid-push, PostgreSQL restarted, radosgw
stopped, GC on one replica while another takes pushes — lose nothing acknowledged, never
serve a partial blob and answer 503 with the spec's JSON while a backend is away."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from layerstore.assembly import load_image
from layerstore.content.local import LocalStore
from layerstore.digest import Digest
from layerstore.docker_archive import ArchiveImage, write_docker_archive
from layerstore.oci import Descriptor, MediaType
from registry.testing.balancer import BalancerError
from registry.testing.engines import (
    PostgresEngine,
    RgwEngine,
    pause_gateway,
    pause_postgres,
    resume_gateway,
    resume_postgres,
)
from tests.peers import Dockerd, docker, require
from tests.registry.ha import HaRegistry, shared_tls, start_ha
from tests.registry.images import GREETING, busybox_image, layout_of
from tests.registry.server import REPO_ROOT, Api, error_codes, sha256
from tests.registry.test_s3_server import keys

pytestmark = pytest.mark.usefixtures("ha_deadline")
MIB = 1024 * 1024


def payload(size: int, seed: str = "") -> bytes:
    """Reproducible bytes."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha512(f"{seed}{i}".encode()).digest() * 16
        i += 1
    return bytes(out[:size])


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a peer and fail with its output when it fails."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def assert_unavailable(response: httpx.Response) -> None:
    """A 503 with ``Retry-After`` and the spec's JSON error body saying UNAVAILABLE."""
    assert response.status_code == 503, (response.status_code, response.text)
    assert response.headers["Content-Type"] == "application/json", response.headers
    assert int(response.headers["Retry-After"]) >= 1
    assert error_codes(response) == ["UNAVAILABLE"], response.text


def upload_path(client: httpx.Client, repo: str) -> str:
    """Open an upload session; its path."""
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    return httpx.URL(r.headers["Location"]).path


def offset(client: httpx.Client, path: str, patience: float = 60) -> int:
    """The bytes the registry has acknowledged for an upload (``Range``), asking again while
    it answers 503 (each one shaped as the spec says)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            r = client.get(path)
        except httpx.TransportError:
            r = None
        if r is not None and r.status_code == 204:
            return int(r.headers["Range"].split("-")[1]) + 1
        if r is not None and r.status_code != 503 and r.status_code != 502:
            pytest.fail(f"upload status answered {r.status_code}: {r.text}")
        if r is not None and r.status_code == 503 and r.headers.get("Content-Type") \
                == "application/json":
            assert_unavailable(r)
        if time.monotonic() >= deadline:
            pytest.fail("the upload's status did not come back")
        time.sleep(0.5)


def resume(client: httpx.Client, path: str, data: bytes, chunk: int,
           patience: float = 60) -> httpx.Response:
    """Send ``data`` from what the registry acknowledged on, ``chunk`` bytes a PATCH, then
    the closing PUT; a failed request is retried from the acknowledged offset again."""
    deadline = time.monotonic() + patience
    while True:
        pos = offset(client, path)
        try:
            while pos < len(data):
                end = min(pos + chunk, len(data))
                r = client.patch(path, content=data[pos:end], headers={
                    "Content-Range": f"{pos}-{end - 1}",
                    "Content-Type": "application/octet-stream"})
                if r.status_code != 202:
                    raise RuntimeError(f"PATCH answered {r.status_code}: {r.text}")
                pos = end
            r = client.put(path, params={"digest": sha256(data)})
            if r.status_code == 201:
                return r
            raise RuntimeError(f"PUT answered {r.status_code}: {r.text}")
        except (httpx.TransportError, RuntimeError) as exc:
            if time.monotonic() >= deadline:
                pytest.fail(f"the upload did not complete: {exc}")
            time.sleep(0.5)


def push_image(api: Api, repo: str, tag: str, patience: float = 60) -> object:
    """Push a small image, starting over while the registry answers 503."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return api.image(repo, tag)
        except (AssertionError, httpx.TransportError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


# Real clients.


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path
           ) -> tuple[LocalStore, Path, dict[str, Digest]]:
    """A layout with ``base`` (busybox) and ``app`` (busybox and one more layer)."""
    tmp = tmp_path_factory.mktemp("ha-images")
    store = LocalStore(tmp / "store")
    base = busybox_image(store, busybox_rootfs)
    app = busybox_image(store, busybox_rootfs, extra={"app/data": os.urandom(64 * 1024)},
                        workdir=tmp / "w")
    layout = layout_of(tmp / "layout", store, {"base": base.manifest, "app": app.manifest})
    return store, layout, {"base": base.manifest.digest, "app": app.manifest.digest}


def test_docker_push_and_pull_through_the_balancer(healthy_ha: HaRegistry, images,
                                                   dockerd: Dockerd, tmp_path: Path) -> None:
    store, _, digests = images
    ref = f"{healthy_ha.address}/ha/docker-{uuid.uuid4().hex[:8]}:1"
    manifest = Descriptor(media_type=MediaType.OCI_MANIFEST, digest=digests["app"],
                          size=store.info(digests["app"]).size)
    archive = tmp_path / "app.tar"
    write_docker_archive(archive, store, [ArchiveImage(load_image(store, manifest), (ref,))])
    before = len(healthy_ha.balancer.requests())
    docker("load", "-i", str(archive))
    try:
        out = docker("push", ref).stdout.decode()
        pushed = next(line.split("digest: ")[1].split()[0]
                      for line in out.splitlines() if "digest: " in line)
        docker("rmi", ref)
        docker("pull", ref)
        assert docker("run", "--rm", ref).stdout.decode().strip() == GREETING
        docker("pull", f"{ref.rsplit(':', 1)[0]}@{pushed}")
    finally:
        docker("rmi", "-f", ref, check=False)
    # docker tries TLS first on a registry it may reach insecurely: HAProxy logs the
    # ClientHello as a bad request of no server.
    served = {s.server for s in healthy_ha.balancer.requests()[before:]
              if s.method != "<BADREQ>"}
    assert served == {"r0", "r1", "r2"}, served


def test_skopeo_copies_in_and_out(healthy_ha: HaRegistry, images, tmp_path: Path) -> None:
    _, layout, digests = images
    skopeo = require("skopeo")
    ref = f"docker://{healthy_ha.address}/ha/skopeo-{uuid.uuid4().hex[:8]}"
    run(skopeo, "copy", "--dest-tls-verify=false", f"oci:{layout}:base", f"{ref}:1")
    run(skopeo, "copy", "--dest-tls-verify=false", f"oci:{layout}:app", f"{ref}:2")
    raw = run(skopeo, "inspect", "--tls-verify=false", "--raw", f"{ref}:2").stdout.encode()
    assert Digest.from_bytes(raw) == digests["app"]
    out = tmp_path / "out"
    run(skopeo, "copy", "--src-tls-verify=false", f"{ref}:2", f"oci:{out}:copy")
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == str(digests["app"])
    tags = json.loads(run(skopeo, "list-tags", "--tls-verify=false", ref).stdout)
    assert tags["Tags"] == ["1", "2"]


# One upload, many replicas.


def test_chunks_land_on_different_replicas(healthy_ha: HaRegistry) -> None:
    repo = f"ha/chunks-{uuid.uuid4().hex[:8]}"
    data = payload(11 * MIB + 5, "chunks")
    sizes = [5 * MIB + 1, 3 * MIB, 2, 3 * MIB + 2]
    with healthy_ha.client() as client:
        path = upload_path(client, repo)
        pos = 0
        for size in sizes:
            r = client.patch(path, content=data[pos:pos + size], headers={
                "Content-Range": f"{pos}-{pos + size - 1}",
                "Content-Type": "application/octet-stream"})
            assert r.status_code == 202, r.text
            pos += size
            assert r.headers["Range"] == f"0-{pos - 1}"
        r = client.put(path, params={"digest": sha256(data)})
        assert r.status_code == 201, r.text
        got = client.get(f"/v2/{repo}/blobs/{sha256(data)}")
        assert got.status_code == 200 and got.content == data
    patched_on = {i for i in range(len(healthy_ha.replicas))
                  for method, p, status in healthy_ha.access_log(i)
                  if method == "PATCH" and p == path and status == 202}
    assert len(patched_on) >= 2, patched_on
    by_balancer = {s.server for s in healthy_ha.balancer.requests()
                   if s.method == "PATCH" and s.uri.startswith(path)}
    assert by_balancer == {f"r{i}" for i in patched_on}
    for replica in healthy_ha.replicas:
        with replica.client() as direct:
            assert direct.get(f"/v2/{repo}/blobs/{sha256(data)}").content == data


def test_a_replica_in_maintenance_gets_no_requests(healthy_ha: HaRegistry) -> None:
    ha = healthy_ha
    ha.balancer.set_state(0, "maint")
    try:
        ha.balancer.wait_servers(2)
        before = len(ha.balancer.requests())
        repo = f"ha/maint-{uuid.uuid4().hex[:8]}"
        with ha.client() as client:
            pushed = Api(client).image(repo, "v1", layers=3)
        served = {s.server for s in ha.balancer.requests()[before:]}
        assert served == {"r1", "r2"}, served
    finally:
        ha.balancer.set_state(0, "ready")
    ha.balancer.wait_servers(3)
    with ha.replicas[0].client() as direct:
        r = direct.get(f"/v2/{repo}/manifests/v1", headers={"Accept": pushed.media_type})
        assert r.status_code == 200 and r.content == pushed.body
    with pytest.raises(BalancerError, match="state must be one of"):
        ha.balancer.set_state(0, "gone")


def open_sessions(client: httpx.Client) -> float:
    """``registry_upload_sessions_open`` (upload sessions in the shared database)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("registry_upload_sessions_open "):
            return float(line.split()[1])
    raise AssertionError("no registry_upload_sessions_open in /metrics")


def test_concurrent_pushes_of_one_blob(healthy_ha: HaRegistry) -> None:
    repo = f"ha/same-blob-{uuid.uuid4().hex[:8]}"
    data = payload(6 * MIB + 11, "same blob")

    def push(i: int) -> int:
        with healthy_ha.client() as client:
            if i % 2:
                r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)},
                                content=data)
                return r.status_code
            path = upload_path(client, repo)
            half = len(data) // 2
            assert client.patch(path, content=data[:half], headers={
                "Content-Range": f"0-{half - 1}"}).status_code == 202
            return client.put(path, params={"digest": sha256(data)}, content=data[half:],
                              headers={"Content-Range": f"{half}-{len(data) - 1}"}
                              ).status_code

    with healthy_ha.client() as client:
        before = open_sessions(client)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(push, range(8), timeout=120))
    assert statuses == [201] * 8
    with healthy_ha.client() as client:
        got = client.get(f"/v2/{repo}/blobs/{sha256(data)}")
        assert got.status_code == 200 and got.content == data
        assert open_sessions(client) == before


def test_concurrent_pushes_of_one_tag(healthy_ha: HaRegistry) -> None:
    repo = f"ha/same-tag-{uuid.uuid4().hex[:8]}"
    with healthy_ha.client() as client:
        api = Api(client)
        bodies = []
        for i in range(8):
            pushed = api.image(repo, f"seed{i}", seed=str(i))
            bodies.append(pushed)

    def put(i: int) -> int:
        with healthy_ha.client() as client:
            return Api(client).manifest(repo, "latest", bodies[i].body,
                                        bodies[i].media_type).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(put, range(8), timeout=120))
    assert statuses == [201] * 8
    views = set()
    for replica in healthy_ha.replicas:
        with replica.client() as direct:
            r = direct.get(f"/v2/{repo}/manifests/latest",
                           headers={"Accept": bodies[0].media_type})
            assert r.status_code == 200
            views.add(r.headers["Docker-Content-Digest"])
            tags = direct.get(f"/v2/{repo}/tags/list").json()["tags"]
            assert sorted(tags) == sorted(["latest", *(f"seed{i}" for i in range(8))])
    assert len(views) == 1 and views <= {b.digest for b in bodies}


def test_a_refused_manifest_is_answered_through_the_balancer(healthy_ha: HaRegistry) -> None:
    """A manifest over the size limit is refused with 413 before it is stored; the server
    reads the rest of the body first, so that closing the connection does not reset the
    answer away on its way through the balancer."""
    body = b"{" + b" " * (4 * MIB) + b"}"
    with healthy_ha.client() as client:
        for _ in range(20):
            r = client.put("/v2/ha/huge/manifests/v1", content=body,
                           headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
            assert r.status_code == 413 and error_codes(r) == ["SIZE_INVALID"]


# Faults.


def _serving(ha: HaRegistry) -> int | None:
    """The replica holding the one long request in flight (by its established connections)."""
    busy = []
    for i, replica in enumerate(ha.replicas):
        out = subprocess.run(["ss", "-Htn", "state", "established",
                              f"( sport = :{replica.port} )"], capture_output=True, text=True)
        if out.stdout.strip():
            busy.append(i)
    return busy[0] if len(busy) == 1 else None


def kill_the_serving_replica(ha: HaRegistry, patience: float = 20, sightings: int = 3,
                             interval: float = 0.05) -> int | None:
    """Wait for one replica to hold a request in flight for a while (seen ``sightings``
    times in a row), ``kill -9`` it and return its index; ``None`` when none did within
    ``patience``."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        seen = set()
        for _ in range(sightings):
            seen.add(_serving(ha))
            time.sleep(interval)
        if len(seen) == 1 and None not in seen:
            victim = seen.pop()
            assert victim is not None
            ha.kill(victim)
            return victim
    return None


class DigestWatcher:
    """Asks for a blob by digest through the balancer, over and over while it runs, and
    keeps every answer that is neither 404 nor the whole, right content."""

    def __init__(self, ha: HaRegistry, repo: str, data: bytes) -> None:
        self.ha, self.repo, self.data = ha, repo, data
        self.wrong: list[str] = []
        self.asked = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        digest = sha256(self.data)
        with self.ha.client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    r = client.get(f"/v2/{self.repo}/blobs/{digest}")
                except httpx.TransportError:
                    continue
                self.asked += 1
                if r.status_code == 200 and r.content != self.data:
                    self.wrong.append(f"200 with {len(r.content)} bytes of another content")
                elif r.status_code not in (200, 404, 502, 503):
                    self.wrong.append(f"{r.status_code}: {r.text[:200]}")
                time.sleep(0.05)

    def __enter__(self) -> DigestWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self.wrong, self.wrong
        assert self.asked > 0


def test_replica_killed_mid_push(healthy_ha: HaRegistry, rgw: RgwEngine) -> None:
    ha = healthy_ha
    repo = f"ha/killed-{uuid.uuid4().hex[:8]}"
    data = payload(14 * MIB + 77, "killed")
    first = 6 * MIB
    digest = sha256(data)
    with ha.client() as client:
        path = upload_path(client, repo)
        r = client.patch(path, content=data[:first], headers={
            "Content-Range": f"0-{first - 1}"})
        assert r.status_code == 202 and r.headers["Range"] == f"0-{first - 1}"

        def slow() -> Iterator[bytes]:
            for pos in range(first, len(data), 256 * 1024):
                yield data[pos:pos + 256 * 1024]
                time.sleep(0.05)

        outcome: list[object] = []

        def send() -> None:
            try:
                outcome.append(client.patch(path, content=slow(), headers={
                    "Content-Range": f"{first}-{len(data) - 1}"}))
            except httpx.HTTPError as exc:
                outcome.append(exc)

        with DigestWatcher(ha, repo, data):
            sender = threading.Thread(target=send)
            sender.start()
            victim = kill_the_serving_replica(ha)
            assert victim is not None, "no replica seen serving the PATCH"
            sender.join(60)
            assert outcome and (isinstance(outcome[0], httpx.HTTPError)
                                or outcome[0].status_code >= 500), outcome  # type: ignore[attr-defined]
            # What was acknowledged is kept; nothing of the digest is served yet.
            assert offset(client, path) >= first
            for i, replica in enumerate(ha.replicas):
                if i != victim:
                    with replica.client() as direct:
                        assert direct.head(f"/v2/{repo}/blobs/{digest}").status_code == 404
            assert f"{ha.prefix}/blobs/sha256/{digest[7:]}" not in keys(rgw, ha.prefix)
            r = resume(client, path, data, 4 * MIB)
            assert r.headers["Docker-Content-Digest"] == digest
        ha.revive(victim)
        for replica in ha.replicas:
            with replica.client() as direct:
                got = direct.get(f"/v2/{repo}/blobs/{digest}")
                assert got.status_code == 200 and got.content == data
    assert "Traceback" not in ha.log()


def test_replica_killed_during_the_closing_put(healthy_ha: HaRegistry, rgw: RgwEngine
                                              ) -> None:
    """The closing PUT of an upload whose chunks went to several replicas reads the upload
    back to verify it: the replica doing so is killed; the client's retry finishes it."""
    ha = healthy_ha
    repo = f"ha/killed-put-{uuid.uuid4().hex[:8]}"
    data = payload(48 * MIB + 9, "killed put")
    digest = sha256(data)
    with ha.client() as client:
        path = upload_path(client, repo)
        for pos in range(0, len(data), 6 * MIB):
            end = min(pos + 6 * MIB, len(data))
            assert client.patch(path, content=data[pos:end], headers={
                "Content-Range": f"{pos}-{end - 1}"}).status_code == 202
        outcome: list[object] = []

        def close() -> None:
            try:
                outcome.append(client.put(path, params={"digest": digest}))
            except httpx.HTTPError as exc:
                outcome.append(exc)

        with DigestWatcher(ha, repo, data):
            closer = threading.Thread(target=close)
            closer.start()
            victim = kill_the_serving_replica(ha, patience=10, sightings=2, interval=0.01)
            closer.join(60)
            assert outcome
            first = outcome[0]
            if victim is None:
                # The PUT was over before a replica was seen holding it.
                assert isinstance(first, httpx.Response) and first.status_code == 201
            elif not (isinstance(first, httpx.Response) and first.status_code == 201):
                status = client.get(path)
                if status.status_code == 204:
                    r = client.put(path, params={"digest": digest})
                    assert r.status_code == 201, r.text
                else:
                    # The commit was through before the kill: the session is gone and the
                    # blob complete.
                    assert status.status_code == 404, status.text
        if victim is not None:
            ha.revive(victim)
        for replica in ha.replicas:
            with replica.client() as direct:
                got = direct.get(f"/v2/{repo}/blobs/{digest}")
                assert got.status_code == 200 and got.content == data
    stored = keys(rgw, ha.prefix)
    assert f"{ha.prefix}/blobs/sha256/{digest[7:]}" in stored
    assert not [k for k in stored if path.rsplit("/", 1)[-1] in k]
    assert "Traceback" not in ha.log()


def test_docker_push_survives_a_replica_killed(healthy_ha: HaRegistry, busybox_rootfs: Path,
                                               dockerd: Dockerd, tmp_path: Path) -> None:
    ha = healthy_ha
    store = LocalStore(tmp_path / "store")
    big = busybox_image(store, busybox_rootfs, extra={"big": os.urandom(24 * MIB)},
                        workdir=tmp_path / "w")
    ref = f"{ha.address}/ha/docker-killed-{uuid.uuid4().hex[:8]}:1"
    archive = tmp_path / "big.tar"
    write_docker_archive(archive, store, [ArchiveImage(load_image(store, big.manifest),
                                                       (ref,))])
    docker("load", "-i", str(archive))
    victims: list[int | None] = []
    killer = threading.Thread(target=lambda: victims.append(kill_the_serving_replica(ha)))
    try:
        killer.start()
        # docker retries a failed layer upload itself, but not a failed manifest PUT:
        # then the push is run again, as a CI job's retry would.
        if docker("push", ref, check=False).returncode != 0:
            killer.join()
            docker("push", ref)
        killer.join()
        assert victims and victims[0] is not None, "no replica was killed during the push"
        ha.revive()
        docker("rmi", ref)
        docker("pull", ref)
        assert docker("run", "--rm", ref).stdout.decode().strip() == GREETING
    finally:
        killer.join()
        ha.revive()
        docker("rmi", "-f", ref, check=False)


class BackgroundPusher:
    """Pushes small images through the balancer in a loop while it runs, each one again
    (from the start) until it succeeds; every 5xx it gets must be the spec's 503."""

    def __init__(self, ha: HaRegistry, repo: str) -> None:
        self.ha, self.repo = ha, repo
        self.pushed: dict[str, object] = {}
        self.bad: list[str] = []
        self.unavailable = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _check(self, response: httpx.Response) -> None:
        if response.status_code >= 500:
            response.read()
            try:
                assert_unavailable(response)
                self.unavailable += 1
            except AssertionError as exc:
                self.bad.append(f"{response.request.method} {response.request.url}: {exc}")

    def _run(self) -> None:
        with self.ha.client(event_hooks={"response": [self._check]}) as client:
            api = Api(client)
            i = 0
            while not self._stop.is_set():
                try:
                    self.pushed[f"bg{i}"] = push_image(api, self.repo, f"bg{i}")
                except Exception as exc:
                    self.bad.append(f"push bg{i}: {exc}")
                    return
                i += 1

    def __enter__(self) -> BackgroundPusher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(90)
        assert not self.bad, self.bad

    def verify(self, client: httpx.Client) -> None:
        """Every image it pushed is there, whole."""
        assert self.pushed
        for tag, image in self.pushed.items():
            r = client.get(f"/v2/{self.repo}/manifests/{tag}",
                           headers={"Accept": image.media_type})  # type: ignore[attr-defined]
            assert r.status_code == 200 and r.content == image.body, tag  # type: ignore


def test_postgresql_restarted_during_a_push(healthy_ha: HaRegistry,
                                            postgres: PostgresEngine) -> None:
    ha = healthy_ha
    repo = f"ha/pg-{uuid.uuid4().hex[:8]}"
    data = payload(12 * MIB + 3, "pg restart")
    first = 5 * MIB + 1
    with ha.client() as client:
        api = Api(client)
        kept = api.image(repo, "kept")
        path = upload_path(client, repo)
        assert client.patch(path, content=data[:first], headers={
            "Content-Range": f"0-{first - 1}"}).status_code == 202
        with BackgroundPusher(ha, repo) as pusher:
            time.sleep(0.5)
            pause_postgres(postgres)
            try:
                r = client.patch(path, content=data[first:first + MIB], headers={
                    "Content-Range": f"{first}-{first + MIB - 1}"})
                assert_unavailable(r)
                assert_unavailable(client.get(f"/v2/{repo}/manifests/kept"))
                assert_unavailable(client.put(f"/v2/{repo}/manifests/other",
                                              content=kept.body,
                                              headers={"Content-Type": kept.media_type}))
                for replica in ha.replicas:
                    with replica.client() as direct:
                        health = direct.get("/healthz")
                        assert health.status_code == 503 and "metadata" in health.json()
                time.sleep(1)
            finally:
                resume_postgres(postgres)
            r = resume(client, path, data, 4 * MIB)
            assert r.headers["Docker-Content-Digest"] == sha256(data)
            before = len(pusher.pushed)
            deadline = time.monotonic() + 60
            while len(pusher.pushed) < before + 2 and time.monotonic() < deadline:
                time.sleep(0.2)
        assert pusher.unavailable > 0
        pusher.verify(client)
        assert client.get(f"/v2/{repo}/blobs/{sha256(data)}").content == data
        assert client.get(f"/v2/{repo}/manifests/kept",
                          headers={"Accept": kept.media_type}).content == kept.body
        for replica in ha.replicas:
            with replica.client() as direct:
                assert _eventually_healthy(direct)
    assert "Traceback" not in ha.log()


def _eventually_healthy(client: httpx.Client, patience: float = 60) -> bool:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            if client.get("/healthz").status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    return False


def test_radosgw_stopped(healthy_ha: HaRegistry, rgw: RgwEngine) -> None:
    ha = healthy_ha
    repo = f"ha/rgw-{uuid.uuid4().hex[:8]}"
    data = payload(300_000, "rgw")
    with ha.client() as client:
        api = Api(client)
        digest = api.blob(repo, data)
        path = upload_path(client, repo)
        with BackgroundPusher(ha, repo) as pusher:
            time.sleep(0.5)
            pause_gateway(rgw)
            try:
                for _ in range(len(ha.replicas)):
                    assert_unavailable(client.get(f"/v2/{repo}/blobs/{digest}"))
                    assert_unavailable(client.post(f"/v2/{repo}/blobs/uploads/",
                                                   params={"digest": sha256(b"new")},
                                                   content=b"new"))
                assert_unavailable(client.patch(path, content=payload(6 * MIB, "more"),
                                                headers={"Content-Range": f"0-{6 * MIB - 1}"}))
                health = client.get("/healthz")
                assert health.status_code == 503 and "storage" in health.json()
                for replica in ha.replicas:
                    with replica.client() as direct:
                        health = direct.get("/healthz")
                        assert health.status_code == 503 and "storage" in health.json()
                time.sleep(1)
            finally:
                resume_gateway(rgw)
            for replica in ha.replicas:
                with replica.client() as direct:
                    assert _eventually_healthy(direct)
            before = len(pusher.pushed)
            deadline = time.monotonic() + 60
            while len(pusher.pushed) < before + 2 and time.monotonic() < deadline:
                time.sleep(0.2)
        assert pusher.unavailable > 0
        pusher.verify(client)
        assert client.get(f"/v2/{repo}/blobs/{digest}").content == data
        api.blob(repo, b"new")
        push_image(api, repo, "after")
    assert "Traceback" not in ha.log()


def test_gc_on_one_replica_while_another_takes_pushes(healthy_ha: HaRegistry) -> None:
    ha = healthy_ha
    repo = f"ha/gc-{uuid.uuid4().hex[:8]}"
    grace = 3
    with ha.client() as client:
        api = Api(client)
        kept = api.image(repo, "kept")
        loose = [api.blob(repo, payload(50_000, f"loose {i}")) for i in range(3)]
    time.sleep(grace + 0.5)
    pushed: list[tuple[str, object]] = []
    stop = threading.Event()
    failures: list[BaseException] = []

    def pusher() -> None:
        with ha.replicas[1].client() as direct:
            api = Api(direct)
            i = 0
            while not stop.is_set():
                try:
                    pushed.append((f"p{i}", api.image(repo, f"p{i}", layers=2, seed=str(i))))
                except BaseException as exc:
                    failures.append(exc)
                    return
                i += 1

    thread = threading.Thread(target=pusher)
    thread.start()
    try:
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith(("REGISTRY_", "AWS_"))}
        for _ in range(2):
            proc = subprocess.run(
                [sys.executable, "-m", "registry.cli", "gc", "--root", str(ha.root),
                 "--grace", str(grace)], env={**clean, **ha.env, "PYTHONPATH": str(REPO_ROOT)},
                capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
            assert proc.returncode == 0, proc.stderr
    finally:
        stop.set()
        thread.join(60)
    assert not failures, failures
    assert len(pushed) >= 2
    with ha.client() as client:
        for tag, image in [("kept", kept), *pushed]:
            body = image.body  # type: ignore[attr-defined]
            r = client.get(f"/v2/{repo}/manifests/{tag}",
                           headers={"Accept": image.media_type})  # type: ignore[attr-defined]
            assert r.status_code == 200 and r.content == body, tag
            doc = json.loads(body)
            for desc in [doc["config"], *doc["layers"]]:
                blob = client.get(f"/v2/{repo}/blobs/{desc['digest']}")
                assert blob.status_code == 200, (tag, desc["digest"])
                assert sha256(blob.content) == desc["digest"]
        for digest in loose:
            assert client.head(f"/v2/{repo}/blobs/{digest}").status_code == 404


# Token auth and TLS shared by the replicas.


ALICE = ("alice", "alice-pw")


@pytest.fixture(scope="module")
def secure_ha(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresEngine,
              rgw: RgwEngine) -> Iterator[tuple[HaRegistry, Path]]:
    """Three replicas with token auth and one shared certificate (the balancer terminates
    TLS with it and speaks TLS to them); user alice may push ``team/**``. Yields the
    deployment and the CA certificate."""
    directory = tmp_path_factory.mktemp("ha-secure")
    tls = shared_tls(directory / "tls")
    access = [{"repository": "team/**", "users": [ALICE[0]], "actions": ["pull", "push"]}]
    deployment = start_ha(directory, postgres, rgw, tls=tls, extra_env={
        "REGISTRY_AUTH": "token", "REGISTRY_ACCESS": json.dumps(access)})
    try:
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith(("REGISTRY_", "AWS_"))}
        proc = subprocess.run(
            [sys.executable, "-m", "registry.cli", "user", "add", ALICE[0], "--password-stdin",
             "--root", str(deployment.root)], input=ALICE[1] + "\n", capture_output=True,
            text=True, timeout=60, cwd=REPO_ROOT,
            env={**clean, **deployment.env, "PYTHONPATH": str(REPO_ROOT)})
        assert proc.returncode == 0, proc.stderr
        assert tls.ca is not None
        yield deployment, tls.ca
    finally:
        deployment.stop()


def test_a_token_from_one_replica_is_good_on_every_other(secure_ha) -> None:
    ha, ca = secure_ha
    scope = "repository:team/app:pull,push"
    with ha.replicas[0].client(verify=ssl.create_default_context(cafile=str(ca))) as first:
        challenge = first.get("/v2/")
        assert challenge.status_code == 401
        assert f'realm="https://{ha.replicas[0].address}/token"' in \
            challenge.headers["WWW-Authenticate"]
        got = first.get("/token", params={"service": "pybuild-registry", "scope": scope},
                        auth=ALICE)
        assert got.status_code == 200, got.text
        token = got.json()["token"]
    for replica in ha.replicas[1:]:
        with replica.client(verify=ssl.create_default_context(cafile=str(ca)),
                            headers={"Authorization": f"Bearer {token}"}) as other:
            assert other.get("/v2/").status_code == 200
            Api(other).blob("team/app", f"pushed on {replica.port}".encode())
    with ha.client(verify=ssl.create_default_context(cafile=str(ca))) as balanced:
        r = balanced.get("/v2/")
        assert r.status_code == 401
        assert f'realm="https://{ha.address}/token"' in r.headers["WWW-Authenticate"]


def test_docker_login_push_pull_through_the_tls_balancer(secure_ha, images, dockerd: Dockerd,
                                                         tmp_path: Path) -> None:
    ha, ca = secure_ha
    store, _, digests = images
    certs = Path("/etc/docker/certs.d") / ha.address
    certs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca, certs / "ca.crt")
    config = ["--config", str(tmp_path / "docker-config")]
    ref = f"{ha.address}/team/docker:1"
    manifest = Descriptor(media_type=MediaType.OCI_MANIFEST, digest=digests["app"],
                          size=store.info(digests["app"]).size)
    archive = tmp_path / "app.tar"
    write_docker_archive(archive, store, [ArchiveImage(load_image(store, manifest), (ref,))])
    before = len(ha.balancer.requests())
    try:
        docker(*config, "login", "-u", ALICE[0], "--password-stdin", ha.address,
               input=ALICE[1].encode())
        docker("load", "-i", str(archive))
        docker(*config, "push", ref)
        docker("rmi", ref)
        docker(*config, "pull", ref)
        assert docker("run", "--rm", ref).stdout.decode().strip() == GREETING
    finally:
        docker("rmi", "-f", ref, check=False)
        shutil.rmtree(certs, ignore_errors=True)
    served = [s for s in ha.balancer.requests()[before:] if s.method != "<BADREQ>"]
    tokens = {s.server for s in served if s.uri.startswith("/token")}
    authorized = {s.server for s in served if s.uri.startswith("/v2/team/") and s.status < 400}
    assert tokens and authorized == {"r0", "r1", "r2"}, served
