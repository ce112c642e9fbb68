"""end-1: the API version check, and the headers every answer carries."""

from __future__ import annotations

import httpx

from tests.registry.server import error_codes


def test_version_check_answers_200_with_the_api_version(client: httpx.Client) -> None:
    r = client.get("/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {}


def test_head_of_the_version_check(client: httpx.Client) -> None:
    r = client.head("/v2/")
    assert r.status_code == 200
    assert r.content == b""


def test_every_answer_carries_the_api_version_header(client: httpx.Client) -> None:
    for method, path in [("GET", "/v2/nope/manifests/latest"), ("GET", "/nowhere"),
                         ("POST", "/v2/"), ("GET", "/healthz"), ("GET", "/metrics"),
                         ("PATCH", "/v2/x/blobs/uploads/not-a-uuid")]:
        r = client.request(method, path)
        assert r.headers["Docker-Distribution-Api-Version"] == "registry/2.0", (method, path)


def test_v2_without_slash_redirects_to_the_version_check(client: httpx.Client) -> None:
    r = client.get("/v2", follow_redirects=True)
    assert r.status_code == 200
    assert r.json() == {}


def test_unknown_route_is_a_spec_shaped_404(client: httpx.Client) -> None:
    for path in ("/v2/foo", "/v2/foo/bar/baz", "/v3/", "/", "/v2/foo/manifests/"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert error_codes(r), path


def test_wrong_method_is_405_unsupported(client: httpx.Client) -> None:
    for method, path in [("POST", "/v2/"), ("DELETE", "/v2/_catalog"),
                         ("POST", "/v2/a/manifests/latest"), ("PUT", "/v2/a/tags/list"),
                         ("PATCH", "/v2/a/blobs/sha256:" + "0" * 64),
                         ("POST", "/metrics"), ("DELETE", "/healthz")]:
        r = client.request(method, path)
        assert r.status_code == 405, (method, path, r.text)
        assert error_codes(r) == ["UNSUPPORTED"], (method, path)
