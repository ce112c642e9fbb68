"""Three stateless replicas (S3 on Ceph RGW, metadata in PostgreSQL, each its own empty
root) behind HAProxy round-robin are one registry: docker and skopeo push and pull through
the balancer, an upload's chunks land on different replicas, concurrent pushes of one blob
or one tag agree, and a token from one replica is good on every other. The faults are in
:mod:`tests.registry.test_ha_faults`."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
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
)
from tests.peers import Dockerd, docker, require
from tests.registry.ha import HaRegistry, shared_tls, start_ha
from tests.registry.ha_requests import (
    payload,
    run,
    upload_path,
)
from tests.registry.images import GREETING, busybox_image, layout_of
from tests.registry.server import REPO_ROOT, Api, error_codes, sha256

pytestmark = pytest.mark.usefixtures("ha_deadline")
MIB = 1024 * 1024


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
