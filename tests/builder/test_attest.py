"""``pybuild build --sbom/--provenance/--attest``: the attestations, stored as BuildKit stores
them, and what they say (and never say)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from builder.attestations import AttestRequest, parse_attest_flags
from builder.cli import main
from builder.store import BuildStore
from layerstore.assembly import StoredImage
from layerstore.layerblob import Layer
from layerstore.oci import MediaType
from tests.builder.attestdata import BUILDKIT_LAYOUT, Blobs, shape, statements, target_of
from tests.builder.test_build import build
from tests.peers import require

SPDX = "https://spdx.dev/Document"
SLSA = "https://slsa.dev/provenance/v1"
DOCKERFILE = "FROM busybox\nARG VERSION=1\nCOPY hello.txt /hello.txt\nLABEL v=$VERSION\n"


@pytest.mark.unit
@pytest.mark.parametrize(("sbom", "provenance", "attest", "expected"), [
    ("true", None, [], AttestRequest(sbom=True)),
    (None, "mode=max", [], AttestRequest(provenance="max")),
    (None, "true", [], AttestRequest(provenance="min")),
    (None, "max", [], AttestRequest(provenance="max")),
    ("false", "false", ["type=sbom", "type=provenance,mode=max"], AttestRequest()),
    (None, None, ["type=sbom", "type=provenance,mode=max,builder-id=https://ci/run/1"],
     AttestRequest(sbom=True, provenance="max", builder_id="https://ci/run/1")),
    (None, "mode=min", ["type=provenance,mode=max"], AttestRequest(provenance="min")),
    (None, None, ["type=sbom,disabled=true"], AttestRequest()),
])
def test_flags(sbom: str | None, provenance: str | None, attest: list[str],
               expected: AttestRequest) -> None:
    assert parse_attest_flags(sbom, provenance, attest) == expected


@pytest.mark.parametrize(("args", "message"), [
    (["--provenance=mode=medium"], "--provenance 'mode=medium': mode must be min or max"),
    (["--attest", "type=sign"], "--attest 'type=sign': type must be sbom or provenance"),
    (["--sbom=maybe"], "--sbom=maybe: expected true, false or key=value attributes"),
    (["--sbom=generator=docker/scout-sbom-indexer"], "unknown sbom attribute 'generator'"),
    (["--provenance=mode=max,version=v0.2"], "only SLSA provenance version v1"),
])
def test_bad_flags_are_one_line_errors(store_root: Path, tmp_path: Path, args: list[str],
                                       message: str, capfd: pytest.CaptureFixture[str]
                                       ) -> None:
    (tmp_path / "hello.txt").write_text("hello\n")
    assert build(store_root, tmp_path, DOCKERFILE, "-t", "a:1", *args) != 0
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert "Traceback" not in err[0]


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text("hello\n")
    return ctx


def test_attestations_are_stored_as_buildkit_stores_them(store_root: Path,
                                                         tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    assert build(store_root, ctx, DOCKERFILE, "-t", "example.com/attest/hello:v1",
                 "--sbom=true", "--provenance=mode=max", "--build-arg", "VERSION=2") == 0
    target = target_of(store_root, "example.com/attest/hello:v1")
    assert target.media_type == MediaType.OCI_INDEX
    with BuildStore.open(store_root) as store:
        ours = shape(Blobs.of_store(store), str(target.digest))
    theirs_blobs, layout = Blobs.of_layout_tar(BUILDKIT_LAYOUT)
    theirs = shape(theirs_blobs, layout["manifests"][0]["digest"])
    assert ours == theirs
    assert ours["attestations"][0]["platform"] == {"architecture": "unknown", "os": "unknown"}
    assert ours["attestations"][0]["layers"] == [("application/vnd.in-toto+json",
                                                  ["in-toto.io/predicate-type"])] * 2
    with BuildStore.open(store_root) as store:
        mine = statements(Blobs.of_store(store), str(target.digest))
    theirs_statements = statements(theirs_blobs, layout["manifests"][0]["digest"])
    assert list(mine) == list(theirs_statements) == [SPDX, SLSA]
    for kind in (SPDX, SLSA):
        assert mine[kind]["_type"] == theirs_statements[kind]["_type"]
        assert sorted(mine[kind]) == sorted(theirs_statements[kind])
        assert [s["name"] for s in mine[kind]["subject"]] == [
            s["name"] for s in theirs_statements[kind]["subject"]]
    provenance = mine[SLSA]["predicate"]
    buildkit = theirs_statements[SLSA]["predicate"]
    assert sorted(provenance) == sorted(buildkit)
    for part in ("buildDefinition", "runDetails"):
        assert sorted(provenance[part]) == sorted(buildkit[part])
    assert sorted(provenance["runDetails"]["metadata"]) == sorted(
        buildkit["runDetails"]["metadata"])
    request, theirs_request = (p["buildDefinition"]["externalParameters"]["request"]
                               for p in (provenance, buildkit))
    assert request["frontend"] == theirs_request["frontend"]
    assert request["locals"] == theirs_request["locals"]
    assert request["args"]["build-arg:VERSION"] == theirs_request["args"]["build-arg:VERSION"]
    assert provenance["buildDefinition"]["buildType"] == theirs_statements[SLSA][
        "predicate"]["buildDefinition"]["buildType"]


def test_an_attested_image_still_runs_and_inspects(store_root: Path, tmp_path: Path,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path)
    assert build(store_root, ctx, DOCKERFILE, "-t", "a:1", "--sbom=true") == 0
    capfd.readouterr()
    assert main(["--root", str(store_root), "run", "--rm", "a:1", "cat", "/hello.txt"]) == 0
    assert capfd.readouterr().out == "hello\n"
    assert main(["--root", str(store_root), "inspect", "a:1"]) == 0
    [info] = json.loads(capfd.readouterr().out)
    assert info["Config"]["Labels"] == {"v": "1"}
    assert build(store_root, ctx, "FROM a:1\nRUN cat /hello.txt > /again\n", "-t", "b:1") == 0
    assert main(["--root", str(store_root), "run", "--rm", "b:1", "cat", "/again"]) == 0
    archive = tmp_path / "a.tar"
    assert main(["--root", str(store_root), "save", "-o", str(archive), "a:1"]) == 0
    capfd.readouterr()
    assert main(["--root", str(store_root), "load", "-i", str(archive)]) == 0
    assert "a:1" in capfd.readouterr().out


def _git(ctx: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    return subprocess.run([require("git"), "-C", str(ctx), *args], capture_output=True,
                          text=True, check=True, env=env, timeout=60).stdout.strip()


def test_provenance_says_what_the_mode_asks_and_never_a_secret(store_root: Path,
                                                               tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nARG VERSION=1\nCOPY hello.txt /hello.txt\n"
        "RUN --mount=type=secret,id=token cat /run/secrets/token | wc -c > /len\n")
    _git(ctx, "init", "-q")
    _git(ctx, "remote", "add", "origin", "https://user:hunter2@git.example.com/team/app.git")
    _git(ctx, "add", "-A")
    _git(ctx, "commit", "-qm", "first")
    commit = _git(ctx, "rev-parse", "HEAD")
    secret = tmp_path / "token"
    secret.write_text("s3cr3t-value-never-recorded")
    with BuildStore.open(store_root) as store:
        busybox = store.images.get("busybox:latest").target.digest
    dockerfile_digest = hashlib.sha256((ctx / "Dockerfile").read_bytes()).hexdigest()
    found = {}
    for mode in ("min", "max"):
        args = ["-t", f"p:{mode}", f"--provenance=mode={mode}", "--build-arg", "VERSION=7",
                "--secret", f"id=token,src={secret}"]
        assert main(["--root", str(store_root), "build", "--progress=plain", *args,
                     str(ctx)]) == 0
        target = target_of(store_root, f"p:{mode}")
        with BuildStore.open(store_root) as store:
            blobs = Blobs.of_store(store)
            index = blobs.json(str(target.digest))
            raw = b"".join(blobs.read(m["digest"]) for m in index["manifests"])
            found[mode] = statement = statements(blobs, str(target.digest))[SLSA]
            attestation = blobs.json(index["manifests"][1]["digest"])
            raw += b"".join(blobs.read(d["digest"]) for d in attestation["layers"])
        assert b"s3cr3t" not in raw and b"hunter2" not in raw
        assert statement["_type"] == "https://in-toto.io/Statement/v1"
        assert statement["subject"] == [{
            "name": f"pkg:docker/p@{mode}?platform=linux%2Famd64",
            "digest": {"sha256": index["manifests"][0]["digest"].split(":")[1]}}]
        definition = statement["predicate"]["buildDefinition"]
        assert definition["externalParameters"]["configSource"] == {
            "path": "Dockerfile", "digest": {"sha256": dockerfile_digest}}
        deps = definition["resolvedDependencies"]
        assert deps[0] == {"uri": "pkg:docker/busybox@latest?platform=linux%2Famd64",
                           "digest": {"sha256": busybox.hex}}
        assert deps[1]["uri"] == "local://context" and len(deps[1]["digest"]["sha256"]) == 64
        assert statement["predicate"]["runDetails"]["builder"]["id"].startswith(
            "pkg:pypi/pybuild@")
    min_args = found["min"]["predicate"]["buildDefinition"]["externalParameters"]["request"]
    max_args = found["max"]["predicate"]["buildDefinition"]["externalParameters"]["request"]
    assert "build-arg:VERSION" not in min_args["args"]
    assert max_args["args"]["build-arg:VERSION"] == "7"
    assert max_args["args"]["vcs:revision"] == commit
    assert not any(k.startswith("vcs:") for k in min_args["args"])
    assert "vcs" not in found["min"]["predicate"]["runDetails"]["metadata"]["buildkit_metadata"]
    assert found["max"]["predicate"]["runDetails"]["metadata"]["buildkit_metadata"]["vcs"] == {
        "revision": commit, "source": "https://git.example.com/team/app.git"}


def _rootfs(base: Path) -> None:
    """A tree holding a record of every package manager the SBOM reads."""
    dpkg = base / "var/lib/dpkg"
    dpkg.mkdir(parents=True)
    (dpkg / "status").write_text(
        "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\n"
        "Source: glibc\nVersion: 2.36-9\nMaintainer: GNU Libc Maintainers <x@debian.org>\n"
        "Description: GNU C Library\n multi-line\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\n")
    (base / "etc").mkdir()
    (base / "etc/os-release").write_text('NAME="Debian"\nID=debian\n')
    apk = base / "lib/apk/db"
    apk.mkdir(parents=True)
    (apk / "installed").write_text("C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\n\n"
                                   "P:zlib\nV:1.3-r0\nA:x86_64\nL:Zlib\n\n")
    dist = base / "usr/lib/python3/dist-packages/requests-2.31.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n"
                                   "License: Apache-2.0\n\nLong description\n")
    egg = base / "usr/local/lib/python3.11/site-packages/six.egg-info"
    egg.mkdir(parents=True)
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: six\nVersion: 1.16.0\n")
    for rel, doc in (("app/node_modules/left-pad", {"name": "left-pad", "version": "1.3.0",
                                                    "license": "WTFPL"}),
                     ("app/node_modules/@types/node", {"name": "@types/node",
                                                       "version": "20.1.0"}),
                     ("app/node_modules/left-pad/node_modules/inner", {"name": "inner",
                                                                       "version": "0.1.0"})):
        (base / rel).mkdir(parents=True)
        (base / rel / "package.json").write_text(json.dumps(doc))
    (base / "app/package.json").write_text(json.dumps({"name": "app", "version": "9.9.9"}))


EXPECTED_PURLS = [
    "pkg:apk/debian/musl@1.2.4-r2?arch=x86_64", "pkg:apk/debian/zlib@1.3-r0?arch=x86_64",
    "pkg:deb/debian/libc6@2.36-9?arch=amd64&upstream=glibc",
    "pkg:npm/%40types/node@20.1.0", "pkg:npm/inner@0.1.0", "pkg:npm/left-pad@1.3.0",
    "pkg:pypi/requests@2.31.0", "pkg:pypi/six@1.16.0",
]


def test_sbom_lists_what_the_image_holds(store_root: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    _rootfs(ctx / "root")
    assert build(store_root, ctx, "FROM busybox\nCOPY root/ /\n", "-t", "s:1",
                 "--sbom=true") == 0
    target = target_of(store_root, "s:1")
    with BuildStore.open(store_root) as store:
        blobs = Blobs.of_store(store)
        found = statements(blobs, str(target.digest))
        image_digest = blobs.json(str(target.digest))["manifests"][0]["digest"]
    assert list(found) == [SPDX]
    statement = found[SPDX]
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"][0]["digest"] == {"sha256": image_digest.split(":")[1]}
    doc = statement["predicate"]
    assert doc["spdxVersion"] == "SPDX-2.3" and doc["dataLicense"] == "CC0-1.0"
    assert doc["SPDXID"] == "SPDXRef-DOCUMENT" and doc["name"] == "s:1"
    assert doc["documentNamespace"].startswith("https://")
    assert doc["creationInfo"]["creators"][0].startswith("Tool: pybuild-")
    packages = {p["SPDXID"]: p for p in doc["packages"]}
    purls = sorted(p["externalRefs"][0]["referenceLocator"] for p in doc["packages"]
                   if "externalRefs" in p)
    assert purls == EXPECTED_PURLS
    assert {p["name"]: p["licenseDeclared"] for p in doc["packages"]}["left-pad"] == "WTFPL"
    for package in doc["packages"]:
        for key in ("name", "SPDXID", "downloadLocation", "versionInfo"):
            assert key in package
    contained = [r["relatedSpdxElement"] for r in doc["relationships"]
                 if r["relationshipType"] == "CONTAINS"]
    assert sorted(contained) == sorted(k for k in packages if k != "SPDXRef-Image")
    assert {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
            "relatedSpdxElement": "SPDXRef-Image"} in doc["relationships"]
    assert spdx_problems(doc, tmp_path) == []


def spdx_problems(doc: dict, tmp_path: Path) -> list[str]:
    """What the SPDX project's own tools (spdx-tools) find wrong with an SPDX JSON document."""
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    path = tmp_path / "sbom.spdx.json"
    path.write_text(json.dumps(doc))
    parsed = parse_file(str(path))
    assert len(parsed.packages) == len(doc["packages"])
    return [m.validation_message for m in validate_full_spdx_document(parsed, "SPDX-2.3")]


@pytest.mark.unit
def test_sbom_scan_never_leaves_the_root(tmp_path: Path) -> None:
    from builder.attestations.packages import scan

    outside = tmp_path / "host"
    _rootfs(outside)
    root = tmp_path / "image"
    (root / "var/lib").mkdir(parents=True)
    (root / "var/lib/dpkg").symlink_to(outside / "var/lib/dpkg")
    (root / "lib/apk/db").mkdir(parents=True)
    (root / "lib/apk/db/installed").symlink_to(outside / "lib/apk/db/installed")
    (root / "usr").symlink_to(outside / "usr")
    (root / "app").symlink_to(outside / "app")
    assert scan(root) == []
    assert [p.name for p in scan(outside)] == ["musl", "zlib", "libc6", "@types/node",
                                                "inner", "left-pad", "requests", "six"]


def test_oci_output_of_an_attested_build_holds_the_index(
        store_root: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    layout = tmp_path / "out.tar"
    metadata = tmp_path / "metadata.json"
    assert build(store_root, ctx, DOCKERFILE, "-t", "o:1", "--provenance=true",
                 "-o", f"type=oci,dest={layout}", "--metadata-file", str(metadata)) == 0
    blobs, index = Blobs.of_layout_tar(layout)
    top = index["manifests"][0]
    assert top["mediaType"] == MediaType.OCI_INDEX
    written = json.loads(metadata.read_text())
    assert written["containerimage.digest"] == top["digest"]
    assert written["containerimage.descriptor"]["mediaType"] == MediaType.OCI_INDEX
    assert list(statements(blobs, top["digest"])) == [SLSA]


def test_a_docker_archive_output_warns_that_it_drops_the_attestations(
        store_root: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path)
    archive = tmp_path / "d.tar"
    assert build(store_root, ctx, DOCKERFILE, "-t", "w:1", "--provenance=true",
                 "-o", f"type=docker,dest={archive}") == 0
    assert ("WARNING: --output type=docker: a docker archive holds the image without its "
            "attestations") in capfd.readouterr().err
    assert archive.stat().st_size > 0


@pytest.mark.unit
def test_the_index_joins_several_platforms_and_their_attestations(tmp_path: Path) -> None:
    from builder.attestations.index import (
        image_index,
        store_attestation_manifest,
        store_index,
    )
    from builder.attestations.intoto import Statement
    from layerstore.content.local import LocalStore
    from layerstore.errors import InvalidArgument
    from layerstore.oci import Platform, describe

    store = LocalStore(tmp_path / "content")
    images = [describe(MediaType.OCI_MANIFEST, f'{{"n":{n}}}'.encode(),
                       platform=Platform(architecture=arch, os="linux"))
              for n, arch in enumerate(("amd64", "arm64"))]
    statement = Statement(SLSA, {"buildDefinition": {}})
    attestations = [store_attestation_manifest(store, image, [statement]) for image in images]
    index = image_index(images, attestations)
    assert [m.digest for m in index.manifests] == [*(i.digest for i in images),
                                                   *(a.digest for a in attestations)]
    assert [(m.annotations or {}).get("vnd.docker.reference.digest")
            for m in index.manifests[2:]] == [str(i.digest) for i in images]
    assert store.exists(store_index(store, index).digest)
    with pytest.raises(InvalidArgument, match="is not about any image of the index"):
        image_index(images[:1], attestations)
    with pytest.raises(InvalidArgument, match="has no platform"):
        image_index([describe(MediaType.OCI_MANIFEST, b"{}")])
    with pytest.raises(InvalidArgument, match="needs at least one statement"):
        store_attestation_manifest(store, images[0], [])


def test_prune_keeps_the_attestations_of_a_named_image(store_root: Path, tmp_path: Path
                                                       ) -> None:
    ctx = _context(tmp_path)
    assert build(store_root, ctx, DOCKERFILE, "-t", "k:1", "--sbom=true",
                 "--provenance=true") == 0
    assert main(["--root", str(store_root), "prune", "--all", "--force"]) == 0
    layout = tmp_path / "k.tar"
    assert main(["--root", str(store_root), "save", "--format", "oci", "-o", str(layout),
                 "k:1"]) == 0
    blobs, index = Blobs.of_layout_tar(layout)
    assert sorted(statements(blobs, index["manifests"][0]["digest"])) == [SLSA, SPDX]


def test_recompressing_an_attested_image_is_a_clear_error(
        store_root: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path)
    assert build(store_root, ctx, DOCKERFILE, "-t", "z:1", "--provenance=true", "-o",
                 f"type=oci,dest={tmp_path / 'z.tar'},compression=zstd,"
                 "force-compression=true") != 0
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "converting the layers of an image with attestations is not supported" in err[0]
    with BuildStore.open(store_root) as store:  # refused before building
        assert [r.name for r in store.images.list()] == ["busybox:latest"]


def test_with_source_date_epoch_the_sbom_is_reproducible(
        store_root: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path)
    targets = []
    for _ in range(2):
        assert build(store_root, ctx, DOCKERFILE, "-t", "r:1", "--sbom=true", "--build-arg",
                     "SOURCE_DATE_EPOCH=1700000000") == 0
        assert "generating sbom" in capfd.readouterr().err
        targets.append(target_of(store_root, "r:1").digest)
    assert targets[0] == targets[1]  # the same index: image, SBOM and all
    with BuildStore.open(store_root) as store:
        doc = statements(Blobs.of_store(store), str(targets[0]))[SPDX]["predicate"]
    assert doc["creationInfo"]["created"] == "2023-11-14T22:13:20Z"


@pytest.mark.unit
def test_distroless_dpkg_records_are_read(tmp_path: Path) -> None:
    from builder.attestations.packages import scan

    status_d = tmp_path / "var/lib/dpkg/status.d"
    status_d.mkdir(parents=True)
    (status_d / "base-files").write_text("Package: base-files\nVersion: 12.4\n"
                                         "Architecture: amd64\n")
    (status_d / "base-files.md5sums").write_text("0123  etc/issue\n")
    (status_d / "tzdata").write_text("Package: tzdata\nVersion: 2024a-0\n"
                                     "Architecture: all\n")
    assert [(p.name, p.version, p.location) for p in scan(tmp_path)] == [
        ("base-files", "12.4", "/var/lib/dpkg/status.d/base-files"),
        ("tzdata", "2024a-0", "/var/lib/dpkg/status.d/tzdata")]


def test_a_base_image_is_recorded_by_the_digest_its_reference_resolved_to(
        store_root: Path, tmp_path: Path) -> None:
    from layerstore.content.copy import put_bytes
    from layerstore.oci import Index, Platform, describe

    with BuildStore.open(store_root) as store:
        busybox = store.images.get("busybox:latest").target
        raw = Index(manifests=(replace(busybox, platform=Platform(architecture="amd64",
                                                                  os="linux")),)).to_json()
        put_bytes(store.content, raw)
        index = describe(MediaType.OCI_INDEX, raw)
        store.images.put("team/base:1", index)
    ctx = _context(tmp_path)
    for base, digest in (("team/base:1", index.digest),
                         (f"busybox@{busybox.digest}", busybox.digest)):
        assert build(store_root, ctx, f"FROM {base}\nCOPY hello.txt /\n", "-t", "d:1",
                     "--provenance=true") == 0
        with BuildStore.open(store_root) as store:
            found = statements(Blobs.of_store(store), str(target_of(store_root, "d:1").digest))
        deps = found[SLSA]["predicate"]["buildDefinition"]["resolvedDependencies"]
        assert deps[0]["digest"] == {"sha256": digest.hex}, base


def test_attest_images_makes_one_attestation_per_platform(store_root: Path,
                                                          tmp_path: Path) -> None:
    from builder.attestations.attach import BuildRecord, PlatformImage, attest_images
    from builder.attestations.provenance import BaseImage
    from builder.options import BuildOptions
    from layerstore.assembly import assemble_image, load_image
    from layerstore.oci import Platform

    ctx = _context(tmp_path)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    amd64, arm64 = Platform(architecture="amd64", os="linux"), Platform(
        architecture="arm64", os="linux")
    with BuildStore.open(store_root) as store:
        amd = load_image(store.content, store.images.get("busybox:latest").target)
        layers = blobs_layers(store, amd)
        arm = assemble_image(store.content, replace(amd.image, architecture="arm64"), layers)
        record = BuildRecord(started="2024-01-01T00:00:00Z", finished="2024-01-01T00:00:01Z",
                             builder_platform=amd64, bases=(
                                 BaseImage("busybox", amd64, amd.manifest.digest),
                                 BaseImage("busybox", arm64, arm.manifest.digest)))
        options = BuildOptions(context=ctx, dockerfile_text=DOCKERFILE,
                               dockerfile_path=ctx / "Dockerfile")
        index = attest_images(store, options, AttestRequest(provenance="min"),
                              [PlatformImage(amd, None), PlatformImage(arm, None)],
                              ["m:1"], record)
        blobs = Blobs.of_store(store)
        entries = blobs.json(str(index.digest))["manifests"]
        assert [e["platform"]["architecture"] for e in entries] == [
            "amd64", "arm64", "unknown", "unknown"]
        for image, attestation in zip(entries[:2], entries[2:], strict=True):
            assert attestation["annotations"]["vnd.docker.reference.digest"] == image["digest"]
            manifest = blobs.json(attestation["digest"])
            assert manifest["subject"]["digest"] == image["digest"]
            statement = blobs.json(manifest["layers"][0]["digest"])
            arch = image["platform"]["architecture"]
            assert statement["subject"][0]["name"] == f"pkg:docker/m@1?platform=linux%2F{arch}"
            deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
            assert [d["uri"] for d in deps if d["uri"].startswith("pkg:")] == [
                f"pkg:docker/busybox@latest?platform=linux%2F{arch}"]


def blobs_layers(store: BuildStore, image: StoredImage) -> list[Layer]:
    """The layers of a stored image as :func:`assemble_image` takes them."""
    from layerstore.oci import Manifest
    from layerstore.walk import load_manifest

    manifest = load_manifest(store.content, image.manifest)
    assert isinstance(manifest, Manifest)
    return [Layer(descriptor=d, diff_id=i, uncompressed_size=0) for d, i in zip(
        manifest.layers, image.image.rootfs.diff_ids, strict=True)]
