"""The OCI model: encoding, strict decoding, unknown fields kept, Docker forms understood."""

from __future__ import annotations

import json

import pytest

from layerstore.digest import Digest
from layerstore.errors import InvalidArgument
from layerstore.oci import (
    Descriptor,
    Healthcheck,
    History,
    Image,
    ImageConfig,
    Index,
    Manifest,
    MediaType,
    Platform,
    RootFS,
    describe,
    layer_compression,
    layer_media_type,
    parse_manifest_or_index,
)

pytestmark = pytest.mark.unit

D = Digest.from_bytes(b"x")
DB = str(D).encode()


def _desc(**kw: object) -> Descriptor:
    return Descriptor(media_type=MediaType.OCI_LAYER_GZIP, digest=D, size=1, **kw)  # type: ignore[arg-type]


def test_descriptor_optional_fields_round_trip() -> None:
    desc = _desc(
        urls=("https://example.com/x",), annotations={"a": "b"}, data="eA==",
        artifact_type="application/x", platform=Platform(architecture="arm64", os="linux",
                                                         variant="v8", os_features=("f",)),
    )
    raw = json.loads(desc.to_json())
    assert raw["artifactType"] == "application/x" and raw["platform"]["variant"] == "v8"
    assert raw["platform"]["os.features"] == ["f"]
    assert Descriptor.from_json(desc.to_json()) == desc


def test_manifest_with_subject_and_artifact_type() -> None:
    m = Manifest(config=describe(MediaType.OCI_EMPTY, b"{}"), layers=(_desc(),),
                 subject=_desc(), artifact_type="application/vnd.example+json",
                 annotations={"k": "v"})
    again = Manifest.from_json(m.to_json())
    assert again == m and again.subject == _desc()


def test_canonical_json_is_sorted_and_compact() -> None:
    raw = Manifest(config=_desc()).to_json()
    assert b" " not in raw
    assert raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()


def test_unknown_fields_round_trip_at_every_level() -> None:
    doc = {
        "schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST, "x-top": {"deep": [1, 2]},
        "config": {"mediaType": MediaType.OCI_CONFIG, "digest": str(D), "size": 3, "x-c": 1},
        "layers": [{"mediaType": MediaType.OCI_LAYER, "digest": str(D), "size": 1, "x-l": True}],
    }
    m = Manifest.from_dict(doc)
    assert json.loads(m.to_json()) == doc


def test_image_config_keeps_every_docker_field() -> None:
    cfg = ImageConfig(
        user="1000:1000", exposed_ports={"80/tcp": {}, "53/udp": {}}, env=("PATH=/bin",),
        entrypoint=("/bin/sh", "-c"), cmd=("echo hi",), volumes={"/data": {}},
        working_dir="/app", labels={"a": "b"}, stop_signal="SIGTERM", args_escaped=True,
        healthcheck=Healthcheck(test=("CMD", "true"), interval=30_000_000_000, timeout=1,
                                start_period=2, start_interval=3, retries=4),
        on_build=("RUN echo hi",), shell=("/bin/bash", "-c"),
    )
    image = Image(created="2024-01-01T00:00:00Z", config=cfg,
                  rootfs=RootFS(diff_ids=(D,)),
                  history=(History(created_by="RUN x"), History(created_by="ENV a=b",
                                                                empty_layer=True)))
    raw = json.loads(image.to_json())
    assert set(raw["config"]) == {
        "User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels",
        "StopSignal", "ArgsEscaped", "Healthcheck", "OnBuild", "Shell"}
    assert raw["history"][1]["empty_layer"] is True
    assert Image.from_json(image.to_json()) == image


def test_docker_schema2_forms_parse() -> None:
    manifest = {"schemaVersion": 2, "mediaType": MediaType.DOCKER_MANIFEST,
                "config": {"mediaType": MediaType.DOCKER_CONFIG, "digest": str(D), "size": 1},
                "layers": [{"mediaType": MediaType.DOCKER_LAYER_GZIP, "digest": str(D),
                            "size": 1}]}
    listing = {"schemaVersion": 2, "mediaType": MediaType.DOCKER_MANIFEST_LIST,
               "manifests": [{"mediaType": MediaType.DOCKER_MANIFEST, "digest": str(D),
                              "size": 1, "platform": {"architecture": "amd64", "os": "linux"}}]}
    assert isinstance(parse_manifest_or_index(json.dumps(manifest).encode()), Manifest)
    idx = parse_manifest_or_index(json.dumps(listing).encode())
    assert isinstance(idx, Index) and str(idx.manifests[0].platform) == "linux/amd64"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"schemaVersion":2}', "missing required field 'config'"),
        (b'{"schemaVersion":1,"config":{"mediaType":"a","digest":"%s","size":1}}' % DB,
         "schemaVersion must be 2"),
        (b'{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:00","size":1}}',
         "Manifest.config.digest"),
        (b'{"schemaVersion":2,"config":{"mediaType":"a","digest":"%s","size":-1}}' % DB,
         "negative size"),
        (b'{"schemaVersion":2,"config":{"mediaType":"a","digest":"%s","size":true}}' % DB,
         "expected an integer"),
        (b'{"schemaVersion":2,"layers":{},"config":{"mediaType":"a","digest":"%s","size":1}}'
         % DB, "Manifest.layers: expected an array"),
    ],
)
def test_bad_manifests_name_the_field(raw: bytes, problem: str) -> None:
    with pytest.raises(InvalidArgument, match=problem):
        Manifest.from_json(raw)


def test_layer_media_types() -> None:
    assert layer_compression(MediaType.DOCKER_LAYER_GZIP) == "gzip"
    assert layer_compression(MediaType.OCI_LAYER_ZSTD) == "zstd"
    assert layer_compression(MediaType.OCI_LAYER_NONDIST) == "none"
    assert layer_media_type("zstd") == MediaType.OCI_LAYER_ZSTD
    assert layer_media_type("gzip", docker=True) == MediaType.DOCKER_LAYER_GZIP
    with pytest.raises(InvalidArgument):
        layer_compression("application/json")
