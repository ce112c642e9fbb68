"""Faults of the three-replica registry (see :mod:`tests.registry.test_ha`): a replica
killed mid-push or during the closing PUT, PostgreSQL restarted, radosgw stopped, GC on one
replica while another takes pushes — nothing acknowledged is lost, no partial blob is
served, and the registry answers 503 with the spec's JSON while a backend is away."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from layerstore.assembly import load_image
from layerstore.content.local import LocalStore
from layerstore.docker_archive import ArchiveImage, write_docker_archive
from registry.testing.engines import (
    PostgresEngine,
    RgwEngine,
    pause_gateway,
    pause_postgres,
    resume_gateway,
    resume_postgres,
)
from tests.peers import Dockerd, docker
from tests.registry.ha import HaRegistry
from tests.registry.ha_requests import (
    assert_unavailable,
    offset,
    payload,
    push_image,
    resume,
    upload_path,
)
from tests.registry.images import GREETING, busybox_image
from tests.registry.server import REPO_ROOT, Api, sha256
from tests.registry.test_s3_server import keys

pytestmark = pytest.mark.usefixtures("ha_deadline")
MIB = 1024 * 1024


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
