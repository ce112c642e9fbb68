"""end-3, end-7, end-9: manifests by tag and digest, content negotiation, PUT validation,
``?tag=``, ``subject``/``OCI-Subject``, deletion and the size limit."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from tests.registry.server import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Api,
    error_codes,
    sha256,
)

MIB = 1024 * 1024


def config_doc(api: Api, repo: str) -> dict[str, object]:
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    digest = api.blob(repo, config)
    return {"mediaType": OCI_CONFIG, "digest": digest, "size": len(config)}


@pytest.mark.parametrize("docker", [False, True])
def test_push_and_pull_an_image_manifest(api: Api, client: httpx.Client, repo: str,
                                         docker: bool) -> None:
    pushed = api.image(repo, "v1", layers=2, docker=docker)
    for reference in ("v1", pushed.digest):
        r = client.get(f"/v2/{repo}/manifests/{reference}")
        assert r.status_code == 200, r.text
        assert r.content == pushed.body
        assert r.headers["Content-Type"] == pushed.media_type
        assert r.headers["Docker-Content-Digest"] == pushed.digest
        assert r.headers["Content-Length"] == str(len(pushed.body))
        h = client.head(f"/v2/{repo}/manifests/{reference}")
        assert h.status_code == 200
        assert h.content == b""
        assert h.headers["Docker-Content-Digest"] == pushed.digest
        assert h.headers["Content-Length"] == str(len(pushed.body))
        assert h.headers["Content-Type"] == pushed.media_type


def test_put_answers_location_and_digest(api: Api, repo: str) -> None:
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_doc(api, repo),
           "layers": []}
    body = json.dumps(doc, indent=3).encode()
    r = api.manifest(repo, "latest", body)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(body)
    assert r.headers["Location"] == str(
        api.client.base_url.join(f"/v2/{repo}/manifests/{sha256(body)}"))
    assert "OCI-Subject" not in r.headers
    assert api.client.get(f"/v2/{repo}/manifests/latest").content == body


@pytest.mark.parametrize("docker", [False, True])
def test_index_and_manifest_list(api: Api, client: httpx.Client, repo: str,
                                 docker: bool) -> None:
    children = [api.image(repo, None, docker=docker, seed=str(i)) for i in range(2)]
    index = api.index(repo, "multi", children, docker=docker)
    r = client.get(f"/v2/{repo}/manifests/multi")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == (DOCKER_LIST if docker else OCI_INDEX)
    assert r.content == index.body


def test_accept_header_negotiation(api: Api, client: httpx.Client, repo: str) -> None:
    oci = api.image(repo, "oci")
    api.index(repo, "index", [oci])
    url = f"/v2/{repo}/manifests/"
    assert client.get(url + "oci", headers={"Accept": OCI_MANIFEST}).status_code == 200
    both = f"{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.9"
    assert client.get(url + "oci", headers={"Accept": both}).status_code == 200
    assert client.get(url + "oci", headers={"Accept": "*/*"}).status_code == 200
    separate = [("Accept", DOCKER_MANIFEST), ("Accept", DOCKER_LIST), ("Accept", OCI_INDEX)]
    r = client.get(url + "index", headers=separate)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    r = client.get(url + "oci", headers={"Accept": DOCKER_MANIFEST})
    assert r.status_code == 404
    assert error_codes(r) == ["MANIFEST_UNKNOWN"]
    assert OCI_MANIFEST in r.json()["errors"][0]["message"]
    r = client.head(url + "index", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 404


def test_content_type_and_media_type_must_agree(api: Api, repo: str) -> None:
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_doc(api, repo),
           "layers": []}
    r = api.manifest(repo, "t", doc, media_type=DOCKER_MANIFEST)
    assert r.status_code == 400
    assert error_codes(r) == ["MANIFEST_INVALID"]
    r = api.manifest(repo, "t", doc, media_type=OCI_INDEX)
    assert r.status_code == 400
    r = api.manifest(repo, "t", doc, media_type="text/plain")
    assert r.status_code == 400
    assert error_codes(r) == ["MANIFEST_INVALID"]
    r = api.manifest(repo, "t", doc, media_type="application/json")
    assert r.status_code == 201, r.text
    r = api.manifest(repo, "t", doc, media_type=f"{OCI_MANIFEST}; charset=utf-8")
    assert r.status_code == 201, r.text


def test_manifest_without_media_type_field_takes_the_content_type(api: Api, client: httpx.Client,
                                                                  repo: str) -> None:
    doc = {"schemaVersion": 2, "config": config_doc(api, repo), "layers": []}
    r = api.manifest(repo, "bare", doc, media_type=OCI_MANIFEST)
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/{repo}/manifests/bare").headers["Content-Type"] == OCI_MANIFEST
    r = api.manifest(repo, "bare", doc, media_type="application/octet-stream")
    assert r.status_code == 400
    assert error_codes(r) == ["MANIFEST_INVALID"]


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[1, 2]", b'"string"', b"{", b"\xff\xfe\x00",
    b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode() + b'"}',
    b'{"schemaVersion": 1, "mediaType": "' + OCI_MANIFEST.encode() + b'", "config": {}}',
    b'{"mediaType": "' + OCI_MANIFEST.encode() + b'", "config": {"digest": "sha256:x"}}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode() + b'", "layers": [], '
    b'"config": {"mediaType": "\\ud800", "size": 1, "digest": "sha256:' + b"0" * 64 + b'"}}',
    b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode() + b'", "layers": [], '
    b'"annotations": {"\\udc00": "x"}, '
    b'"config": {"mediaType": "a/b", "size": 1, "digest": "sha256:' + b"0" * 64 + b'"}}',
    b'{"mediaType": "' + OCI_MANIFEST.encode() + b'", "schemaVersion": 2, "config": '
    b'{"mediaType": "a", "size": -1, "digest": "sha256:' + b"0" * 64 + b'"}}',
])
def test_invalid_manifests_are_manifest_invalid(api: Api, repo: str, body: bytes) -> None:
    r = api.manifest(repo, "bad", body)
    assert r.status_code == 400, r.text
    assert error_codes(r) == ["MANIFEST_INVALID"]


def test_missing_blobs_are_manifest_blob_unknown(api: Api, repo: str) -> None:
    layer_a, layer_b = sha256(b"layer a"), sha256(b"layer b")
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_doc(api, repo),
           "layers": [{"mediaType": OCI_LAYER, "digest": layer_a, "size": 7},
                      {"mediaType": OCI_LAYER, "digest": layer_b, "size": 7}]}
    r = api.manifest(repo, "v1", doc)
    assert r.status_code == 400
    assert error_codes(r) == ["MANIFEST_BLOB_UNKNOWN", "MANIFEST_BLOB_UNKNOWN"]
    messages = " ".join(e["message"] for e in r.json()["errors"])
    assert layer_a in messages and layer_b in messages and repo in messages
    assert api.client.get(f"/v2/{repo}/manifests/v1").status_code == 404


def test_blobs_must_be_in_the_same_repository(api: Api, repo: str) -> None:
    other = f"{repo}/other"
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_doc(api, other),
           "layers": []}
    r = api.manifest(repo, "v1", doc)
    assert r.status_code == 400
    assert error_codes(r) == ["MANIFEST_BLOB_UNKNOWN"]


def test_descriptor_size_must_match_the_blob(api: Api, repo: str) -> None:
    config = config_doc(api, repo)
    config["size"] = int(config["size"]) + 1  # type: ignore[call-overload]
    r = api.manifest(repo, "v1", {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                  "config": config, "layers": []})
    assert r.status_code == 400
    assert error_codes(r) == ["MANIFEST_INVALID"]


def test_index_children_must_exist(api: Api, repo: str) -> None:
    child = api.image(f"{repo}/elsewhere", "v1")
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": child.digest, "size": len(child.body)}]})
    r = api.manifest(repo, "idx", body.encode(), media_type=OCI_INDEX)
    assert r.status_code == 400
    assert error_codes(r) == ["MANIFEST_BLOB_UNKNOWN"]
    assert child.digest in r.text


def test_non_distributable_layers_with_urls_need_no_blob(api: Api, client: httpx.Client,
                                                         repo: str) -> None:
    foreign = {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
               "digest": sha256(b"windows base layer"), "size": 18,
               "urls": ["https://example.invalid/layer"]}
    doc = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": config_doc(api, repo),
           "layers": [foreign]}
    r = api.manifest(repo, "win", doc, media_type=DOCKER_MANIFEST)
    assert r.status_code == 201, r.text
    doc["layers"] = [{**foreign, "mediaType": OCI_LAYER}]
    assert api.manifest(repo, "win2", doc, media_type=DOCKER_MANIFEST).status_code == 400


def test_put_by_digest(api: Api, client: httpx.Client, repo: str) -> None:
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_doc(api, repo),
           "layers": []}
    body = json.dumps(doc).encode()
    r = api.manifest(repo, sha256(body + b" "), body)
    assert r.status_code == 400
    assert error_codes(r) == ["DIGEST_INVALID"]
    r = api.manifest(repo, sha256(body), body)
    assert r.status_code == 201
    assert client.get(f"/v2/{repo}/manifests/{sha256(body)}").content == body
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == []


def test_put_by_sha512_digest(api: Api, client: httpx.Client, repo: str) -> None:
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_doc(api, repo),
           "layers": [], "annotations": {"kind": "sha512"}}
    body = json.dumps(doc).encode()
    digest = "sha512:" + hashlib.sha512(body).hexdigest()
    r = api.manifest(repo, digest, body, tag="five-twelve")
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    for reference in (digest, "five-twelve"):
        got = client.get(f"/v2/{repo}/manifests/{reference}")
        assert got.status_code == 200
        assert got.content == body
        assert got.headers["Docker-Content-Digest"] == digest
    assert client.get(f"/v2/{repo}/manifests/{sha256(body)}").status_code == 404


def test_tag_query_parameters_add_tags(api: Api, client: httpx.Client, repo: str) -> None:
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_doc(api, repo),
           "layers": []}
    body = json.dumps(doc).encode()
    r = api.client.put(f"/v2/{repo}/manifests/{sha256(body)}?tag=a&tag=b&tag=c", content=body,
                       headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == ["a", "b", "c"]
    for tag in "abc":
        assert client.get(f"/v2/{repo}/manifests/{tag}").content == body
    r = api.client.put(f"/v2/{repo}/manifests/{sha256(body)}?tag=-bad", content=body,
                       headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400
    assert error_codes(r) == ["MANIFEST_INVALID"]


def test_subject_is_answered_with_oci_subject(api: Api, client: httpx.Client,
                                              repo: str) -> None:
    image = api.image(repo, "v1")
    artifact = api.artifact(repo, image, "application/vnd.example.sbom")
    assert client.get(f"/v2/{repo}/manifests/{artifact.digest}").status_code == 200


def test_subject_may_be_pushed_before_its_target(api: Api, repo: str) -> None:
    absent = {"mediaType": OCI_MANIFEST, "digest": sha256(b"not pushed yet"), "size": 14}
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_doc(api, repo),
           "layers": [], "subject": absent, "artifactType": "application/vnd.example"}
    r = api.manifest(repo, sha256(json.dumps(doc).encode()), doc)
    assert r.status_code == 201, r.text
    assert r.headers["OCI-Subject"] == absent["digest"]


def test_retag_moves_the_tag(api: Api, client: httpx.Client, repo: str) -> None:
    first = api.image(repo, "latest", seed="1")
    second = api.image(repo, "latest", seed="2")
    assert client.get(f"/v2/{repo}/manifests/latest").content == second.body
    assert client.get(f"/v2/{repo}/manifests/{first.digest}").content == first.body


def test_delete_tag_keeps_the_manifest(api: Api, client: httpx.Client, repo: str) -> None:
    pushed = api.image(repo, "v1")
    api.manifest(repo, "v2", pushed.body)
    r = client.delete(f"/v2/{repo}/manifests/v1")
    assert r.status_code == 202
    assert client.get(f"/v2/{repo}/manifests/v1").status_code == 404
    assert client.get(f"/v2/{repo}/manifests/v2").status_code == 200
    assert client.get(f"/v2/{repo}/manifests/{pushed.digest}").status_code == 200
    r = client.delete(f"/v2/{repo}/manifests/v1")
    assert r.status_code == 404
    assert error_codes(r) == ["MANIFEST_UNKNOWN"]


def test_delete_by_digest_removes_manifest_and_tags(api: Api, client: httpx.Client,
                                                    repo: str) -> None:
    pushed = api.image(repo, "v1")
    api.manifest(repo, "v2", pushed.body)
    keep = api.image(repo, "keep")
    r = client.delete(f"/v2/{repo}/manifests/{pushed.digest}")
    assert r.status_code == 202
    for reference in ("v1", "v2", pushed.digest):
        r = client.get(f"/v2/{repo}/manifests/{reference}")
        assert r.status_code == 404
        assert error_codes(r) == ["MANIFEST_UNKNOWN"]
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == ["keep"]
    assert client.get(f"/v2/{repo}/manifests/keep").content == keep.body
    assert client.delete(f"/v2/{repo}/manifests/{pushed.digest}").status_code == 404


def test_unknown_manifest_and_unknown_repository(api: Api, client: httpx.Client,
                                                 repo: str) -> None:
    r = client.get(f"/v2/{repo}/manifests/latest")
    assert r.status_code == 404
    assert error_codes(r) == ["NAME_UNKNOWN"]
    api.image(repo, "v1")
    for reference in ("latest", sha256(b"nothing")):
        r = client.get(f"/v2/{repo}/manifests/{reference}")
        assert r.status_code == 404
        assert error_codes(r) == ["MANIFEST_UNKNOWN"]
        assert reference in r.json()["errors"][0]["message"]
        assert repo in r.json()["errors"][0]["message"]


def padded_manifest(api: Api, repo: str, size: int) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_doc(api, repo),
           "layers": [], "annotations": {"pad": ""}}
    base = len(json.dumps(doc).encode())
    doc["annotations"] = {"pad": "x" * (size - base)}
    body = json.dumps(doc).encode()
    assert len(body) == size
    return body


def test_manifests_up_to_4_mib_are_accepted(api: Api, client: httpx.Client, repo: str) -> None:
    body = padded_manifest(api, repo, 4 * MIB)
    r = api.manifest(repo, "big", body)
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/{repo}/manifests/big").content == body


def test_larger_manifests_are_413(api: Api, client: httpx.Client, repo: str) -> None:
    body = padded_manifest(api, repo, 4 * MIB + 1)
    r = api.manifest(repo, "huge", body)
    assert r.status_code == 413
    assert error_codes(r) == ["SIZE_INVALID"]

    def stream():
        yield body

    r = client.put(f"/v2/{repo}/manifests/huge", content=stream(),
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 413
    assert client.get(f"/v2/{repo}/manifests/huge").status_code == 404
