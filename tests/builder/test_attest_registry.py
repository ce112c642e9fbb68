"""Attested images and registries: pushed with their attestation manifests (listed by the
referrers API), and BuildKit's attestations kept through ``pybuild pull`` + ``push``."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from builder.cli import main
from builder.store import BuildStore
from layerstore.digest import Digest
from layerstore.oci import MediaType
from registry.client.referrers import list_referrers
from registry.client.settings import ClientSettings
from registry.client.transport import Transport
from registry.testing.processes import RegistryProcess, distribution, ours
from tests.builder.attestdata import BUILDKIT_LAYOUT, BUILDKIT_MULTI_LAYOUT, Blobs, statements
from tests.builder.test_build import build
from tests.peers import Dockerd, docker, require

SLSA = "https://slsa.dev/provenance/v1"
ATTESTATION = "application/vnd.docker.attestation.manifest.v1+json"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    proc = ours(tmp_path_factory.mktemp("attest-registry") / "data", workers=1).start()
    try:
        yield proc
    finally:
        proc.stop()


def skopeo(*args: str) -> bytes:
    return subprocess.run([require("skopeo"), *args], capture_output=True, check=True,
                          timeout=300).stdout


def raw(ref: str) -> bytes:
    """The manifest or index ``ref`` names, as the registry serves it (read by skopeo)."""
    return skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}")


def referrers(registry: RegistryProcess, repository: str, digest: str) -> list[dict]:
    """The referrers API's answer, read with plain HTTP."""
    response = httpx.get(f"{registry.url}/v2/{repository}/referrers/{digest}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["manifests"]


def client_referrers(registry: RegistryProcess, repository: str, digest: str,
                     artifact_type: str | None = None) -> list[tuple[str, str | None]]:
    """The referrers as our client lists them (the API, or the fallback tag)."""
    with Transport(registry.address, ClientSettings()) as transport:
        return [(str(d.digest), d.artifact_type) for d in list_referrers(
            transport, repository, Digest.parse(digest), artifact_type)]


def test_pushed_attestations_are_listed_as_referrers(store_root: Path, tmp_path: Path,
                                                     registry: RegistryProcess) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text("hello\n")
    ref = f"{registry.address}/attest/pushed:1"
    assert build(store_root, ctx, "FROM busybox\nCOPY hello.txt /\n", "-t", ref, "--push",
                 "--sbom=true", "--provenance=mode=max") == 0
    index = json.loads(raw(ref))
    assert index["mediaType"] == MediaType.OCI_INDEX
    image, attestation = index["manifests"]
    listed = referrers(registry, "attest/pushed", image["digest"])
    assert [(r["digest"], r["artifactType"]) for r in listed] == [
        (attestation["digest"], ATTESTATION)]
    assert client_referrers(registry, "attest/pushed", image["digest"], ATTESTATION) == [
        (attestation["digest"], ATTESTATION)]
    assert client_referrers(registry, "attest/pushed", image["digest"], "other/type") == []
    layout = tmp_path / "copied"
    skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:x")
    top = json.loads((layout / "index.json").read_text())["manifests"][0]
    blobs = Blobs(lambda d: (layout / "blobs" / d.replace(":", "/")).read_bytes())
    assert sorted(statements(blobs, top["digest"])) == [SLSA, "https://spdx.dev/Document"]


def test_buildkit_attestations_survive_pull_and_push(tmp_path: Path,
                                                     registry: RegistryProcess) -> None:
    source = f"{registry.address}/buildkit/hello:v1"
    copy = f"{registry.address}/copied/hello:v1"
    skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
           f"oci-archive:{BUILDKIT_LAYOUT}", f"docker://{source}")
    blobs, layout = Blobs.of_layout_tar(BUILDKIT_LAYOUT)
    top = layout["manifests"][0]["digest"]
    root = tmp_path / "store"
    argv = ["--root", str(root)]
    assert main([*argv, "pull", "--progress=plain", source]) == 0
    assert main([*argv, "tag", source, copy]) == 0
    assert main([*argv, "push", "--progress=plain", copy]) == 0
    assert raw(copy) == blobs.read(top)
    image, attestation = blobs.json(top)["manifests"]
    assert raw(f"{registry.address}/copied/hello@{attestation['digest']}") == blobs.read(
        attestation["digest"])
    statement = blobs.json(attestation["digest"])["layers"][0]
    pulled = httpx.get(f"{registry.url}/v2/copied/hello/blobs/{statement['digest']}",
                       timeout=30, follow_redirects=True)
    assert pulled.content == blobs.read(statement["digest"])
    assert [r["digest"] for r in referrers(registry, "copied/hello", image["digest"])] == [
        attestation["digest"]]


def test_docker_pulls_and_runs_an_attested_image(store_root: Path, tmp_path: Path,
                                                 registry: RegistryProcess,
                                                 dockerd: Dockerd) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text("hello from an attested image\n")
    ref = f"{registry.address}/attest/docker-run:1"
    assert build(store_root, ctx, "FROM busybox\nCOPY hello.txt /\n", "-t", ref, "--push",
                 "--provenance=true") == 0
    docker("pull", ref)
    try:
        out = docker("run", "--rm", "--network=none", ref, "cat", "/hello.txt").stdout
        assert out == b"hello from an attested image\n"
    finally:
        docker("rmi", "-f", ref, check=False)


def test_a_registry_without_the_referrers_api_gets_the_fallback_tag(
        store_root: Path, tmp_path: Path, registry: RegistryProcess) -> None:
    require("docker-registry")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text("hello\n")
    proc = distribution(tmp_path / "dist").start()
    try:
        ref = f"{proc.address}/attest/fallback:1"
        assert build(store_root, ctx, "FROM busybox\nCOPY hello.txt /\n", "-t", ref,
                     "--push", "--provenance=true") == 0
        image, attestation = json.loads(raw(ref))["manifests"]
        tag = "sha256-" + image["digest"].split(":")[1]
        listed = json.loads(raw(f"{proc.address}/attest/fallback:{tag}"))
        assert listed["mediaType"] == MediaType.OCI_INDEX
        assert [(m["digest"], m["artifactType"]) for m in listed["manifests"]] == [
            (attestation["digest"], ATTESTATION)]
        assert client_referrers(proc, "attest/fallback", image["digest"]) == [
            (attestation["digest"], ATTESTATION)]
        # pushed again: listed once
        assert main(["--root", str(store_root), "push", "--progress=plain", ref]) == 0
        assert len(json.loads(raw(f"{proc.address}/attest/fallback:{tag}"))["manifests"]) == 1
        assert client_referrers(proc, "attest/fallback", attestation["digest"]) == []
    finally:
        proc.stop()
    # our registry has the referrers API: no fallback tag is made there
    ours_ref = f"{registry.address}/attest/no-fallback:1"
    assert main(["--root", str(store_root), "tag", ref, ours_ref]) == 0
    assert main(["--root", str(store_root), "push", "--progress=plain", ours_ref]) == 0
    tags = httpx.get(f"{registry.url}/v2/attest/no-fallback/tags/list", timeout=30).json()
    assert tags["tags"] == ["1"]


def test_a_pull_fetches_the_attestations_of_its_platform_only(
        tmp_path: Path, registry: RegistryProcess) -> None:
    source = f"{registry.address}/buildkit/multi:v1"
    skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
           f"oci-archive:{BUILDKIT_MULTI_LAYOUT}", f"docker://{source}")
    blobs, layout = Blobs.of_layout_tar(BUILDKIT_MULTI_LAYOUT)
    index = blobs.json(layout["manifests"][0]["digest"])
    images = {m["platform"]["architecture"]: m for m in index["manifests"]
              if m["platform"]["os"] == "linux"}
    attestations = {m["annotations"]["vnd.docker.reference.digest"]: m
                    for m in index["manifests"] if m.get("annotations")}
    root = tmp_path / "store"
    assert main(["--root", str(root), "pull", "--progress=plain", "--platform", "linux/arm64",
                 source]) == 0
    with BuildStore.open(root) as store:
        def stored(entry: dict) -> bool:
            return store.content.exists(Digest.parse(entry["digest"]))
        assert stored(images["arm64"]) and stored(attestations[images["arm64"]["digest"]])
        assert not stored(images["amd64"])
        assert not stored(attestations[images["amd64"]["digest"]])
        manifest = blobs.json(attestations[images["arm64"]["digest"]]["digest"])
        assert all(stored(layer) for layer in manifest["layers"])


def test_buildkit_attestations_survive_load_and_push(tmp_path: Path,
                                                     registry: RegistryProcess) -> None:
    blobs, layout = Blobs.of_layout_tar(BUILDKIT_LAYOUT)
    top = layout["manifests"][0]["digest"]
    root = tmp_path / "store"
    ref = f"{registry.address}/loaded/hello:v1"
    assert main(["--root", str(root), "load", "-i", str(BUILDKIT_LAYOUT)]) == 0
    assert main(["--root", str(root), "tag", "example.com/attest/hello:v1", ref]) == 0
    assert main(["--root", str(root), "push", "--progress=plain", ref]) == 0
    assert raw(ref) == blobs.read(top)
    image, attestation = blobs.json(top)["manifests"]
    assert client_referrers(registry, "loaded/hello", image["digest"]) == [
        (attestation["digest"], ATTESTATION)]


def test_a_multi_platform_index_pulled_whole_is_pushed_intact(
        tmp_path: Path, registry: RegistryProcess) -> None:
    source = f"{registry.address}/buildkit/multi-all:v1"
    copy = f"{registry.address}/copied/multi-all:v1"
    skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
           f"oci-archive:{BUILDKIT_MULTI_LAYOUT}", f"docker://{source}")
    blobs, layout = Blobs.of_layout_tar(BUILDKIT_MULTI_LAYOUT)
    top = layout["manifests"][0]["digest"]
    argv = ["--root", str(tmp_path / "store")]
    assert main([*argv, "pull", "--progress=plain", "--all-platforms", source]) == 0
    assert main([*argv, "tag", source, copy]) == 0
    assert main([*argv, "push", "--progress=plain", copy]) == 0
    assert raw(copy) == blobs.read(top)
    entries = blobs.json(top)["manifests"]
    assert len(entries) == 4
    for entry in entries:
        assert raw(f"{registry.address}/copied/multi-all@{entry['digest']}") == blobs.read(
            entry["digest"])
    for image in entries[:2]:
        [listed] = client_referrers(registry, "copied/multi-all", image["digest"])
        assert listed[1] == ATTESTATION
