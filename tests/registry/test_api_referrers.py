"""end-12a/12b: the referrers API."""

from __future__ import annotations

import httpx

from tests.registry.server import OCI_INDEX, OCI_MANIFEST, Api, error_codes, sha256


def test_referrers_of_a_manifest(api: Api, client: httpx.Client, repo: str) -> None:
    image = api.image(repo, "v1")
    sbom = api.artifact(repo, image, "application/vnd.example.sbom",
                        {"org.example.format": "spdx"})
    sig = api.artifact(repo, image, "application/vnd.example.signature")
    r = client.get(f"/v2/{repo}/referrers/{image.digest}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    assert "OCI-Filters-Applied" not in r.headers
    doc = r.json()
    assert doc["schemaVersion"] == 2
    assert doc["mediaType"] == OCI_INDEX
    by_digest = {d["digest"]: d for d in doc["manifests"]}
    assert set(by_digest) == {sbom.digest, sig.digest}
    assert [d["digest"] for d in doc["manifests"]] == sorted(by_digest)
    entry = by_digest[sbom.digest]
    assert entry == {"mediaType": OCI_MANIFEST, "digest": sbom.digest, "size": len(sbom.body),
                     "artifactType": "application/vnd.example.sbom",
                     "annotations": {"org.example.format": "spdx"}}
    assert "annotations" not in by_digest[sig.digest]


def test_artifact_type_filter(api: Api, client: httpx.Client, repo: str) -> None:
    image = api.image(repo, "v1")
    sbom = api.artifact(repo, image, "application/vnd.example.sbom")
    api.artifact(repo, image, "application/vnd.example.signature")
    r = client.get(f"/v2/{repo}/referrers/{image.digest}",
                   params={"artifactType": "application/vnd.example.sbom"})
    assert r.status_code == 200
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [d["digest"] for d in r.json()["manifests"]] == [sbom.digest]
    r = client.get(f"/v2/{repo}/referrers/{image.digest}",
                   params={"artifactType": "application/none"})
    assert r.json()["manifests"] == []
    assert r.headers["OCI-Filters-Applied"] == "artifactType"


def test_artifact_type_falls_back_to_the_config_media_type(api: Api, client: httpx.Client,
                                                           repo: str) -> None:
    image = api.image(repo, "v1")
    art = api.artifact(repo, image, "application/vnd.example.config+json", in_config=True)
    doc = client.get(f"/v2/{repo}/referrers/{image.digest}").json()
    assert doc["manifests"] == [{"mediaType": OCI_MANIFEST, "digest": art.digest,
                                 "size": len(art.body),
                                 "artifactType": "application/vnd.example.config+json"}]


def test_index_referrer_without_artifact_type(api: Api, client: httpx.Client,
                                              repo: str) -> None:
    image = api.image(repo, "v1")
    child = api.image(repo, None, seed="child")
    subject = {"mediaType": image.media_type, "digest": image.digest, "size": len(image.body)}
    idx = api.index(repo, None, [child], extra={"subject": subject,
                                                "annotations": {"a": "b"}})
    doc = client.get(f"/v2/{repo}/referrers/{image.digest}").json()
    assert doc["manifests"] == [{"mediaType": OCI_INDEX, "digest": idx.digest,
                                 "size": len(idx.body), "annotations": {"a": "b"}}]


def test_no_referrers_is_an_empty_index_never_404(api: Api, client: httpx.Client,
                                                  repo: str) -> None:
    image = api.image(repo, "v1")
    for name, digest in ((repo, image.digest), (repo, sha256(b"unknown")),
                         ("never/pushed", image.digest)):
        r = client.get(f"/v2/{name}/referrers/{digest}")
        assert r.status_code == 200
        assert r.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


def test_deleted_referrer_disappears(api: Api, client: httpx.Client, repo: str) -> None:
    image = api.image(repo, "v1")
    art = api.artifact(repo, image, "application/vnd.example.sbom")
    assert client.delete(f"/v2/{repo}/manifests/{art.digest}").status_code == 202
    assert client.get(f"/v2/{repo}/referrers/{image.digest}").json()["manifests"] == []


def test_invalid_digest_is_400(client: httpx.Client, repo: str) -> None:
    for digest in ("latest", "sha256:abc", "md5:" + "0" * 32, "sha256:" + "G" * 64):
        r = client.get(f"/v2/{repo}/referrers/{digest}")
        assert r.status_code == 400, digest
        assert error_codes(r) == ["DIGEST_INVALID"]
