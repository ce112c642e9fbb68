"""The error codes: each reachable over HTTP with the spec's JSON body, names checked against
the spec grammar, and garbage requests answered 4xx, never 500."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.registry.server import (
    OCI_MANIFEST,
    Api,
    RegistryServer,
    error_codes,
    sha256,
)

AUTHORIZER = "tests.registry.server:role_authorizer"


def test_error_body_shape(client: httpx.Client, repo: str) -> None:
    r = client.get(f"/v2/{repo}/blobs/{sha256(b'x')}")
    assert r.headers["Content-Type"] == "application/json"
    doc = r.json()
    assert set(doc) == {"errors"}
    (entry,) = doc["errors"]
    assert entry["code"] == "BLOB_UNKNOWN"
    assert repo in entry["message"] and sha256(b"x") in entry["message"]
    assert entry["detail"] == {"digest": sha256(b"x")}


def test_each_error_code_is_reachable(api: Api, client: httpx.Client, repo: str) -> None:
    api.blob(repo, b"present")
    session = client.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
    cases = {
        "BLOB_UNKNOWN": (404, client.get(f"/v2/{repo}/blobs/{sha256(b'absent')}")),
        "BLOB_UPLOAD_INVALID": (400, client.patch(session, content=b"x",
                                                  headers={"Content-Range": "zero-one"})),
        "BLOB_UPLOAD_UNKNOWN": (404, client.get(
            f"/v2/{repo}/blobs/uploads/00000000-0000-4000-8000-000000000000")),
        "DIGEST_INVALID": (400, client.put(session, params={"digest": sha256(b"other")},
                                           content=b"data")),
        "MANIFEST_BLOB_UNKNOWN": (400, api.manifest(repo, "t", {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
            "config": {"mediaType": "a/b", "digest": sha256(b"no"), "size": 2}})),
        "MANIFEST_INVALID": (400, api.manifest(repo, "t", b"{nope")),
        "MANIFEST_UNKNOWN": (404, client.get(f"/v2/{repo}/manifests/absent")),
        "NAME_INVALID": (400, client.get("/v2/Not_Valid/tags/list")),
        "NAME_UNKNOWN": (404, client.get(f"/v2/{repo}-nothing/tags/list")),
        "SIZE_INVALID": (400, client.post(f"/v2/{repo}/blobs/uploads/").headers and
                         client.patch(client.post(f"/v2/{repo}/blobs/uploads/")
                                      .headers["Location"], content=b"12345",
                                      headers={"Content-Range": "0-9"})),
        "UNSUPPORTED": (405, client.post(f"/v2/{repo}/tags/list")),
        "RANGE_INVALID": (416, client.patch(
            client.post(f"/v2/{repo}/blobs/uploads/").headers["Location"], content=b"x",
            headers={"Content-Range": "7-7"})),
        "PAGINATION_NUMBER_INVALID": (400, client.get("/v2/_catalog?n=-1")),
    }
    for code, (status, response) in cases.items():
        assert response.status_code == status, (code, response.text)
        assert error_codes(response)[0] == code, (code, response.text)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    root = tmp_path_factory.mktemp("guarded") / "root"
    server = RegistryServer(root, env={"REGISTRY_AUTHORIZER": AUTHORIZER}).start()
    yield server
    server.stop()


def as_role(server: RegistryServer, role: str) -> httpx.Client:
    return server.client(headers={"Authorization": f"Bearer {role}"})


def test_unauthorized_denied_and_too_many_requests(guarded: RegistryServer) -> None:
    with guarded.client() as anonymous:
        r = anonymous.get("/v2/")
        assert r.status_code == 401
        assert error_codes(r) == ["UNAUTHORIZED"]
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="test"'
        assert r.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
        r = anonymous.get("/v2/a/b/manifests/latest")
        assert r.status_code == 401
        assert r.json()["errors"][0]["detail"] == [
            {"Type": "repository", "Name": "a/b", "Action": "pull"}]
    with as_role(guarded, "writer") as writer:
        Api(writer).image("auth/app", "v1")
    with as_role(guarded, "reader") as reader:
        assert reader.get("/v2/auth/app/manifests/v1").status_code == 200
        for method, path in [("POST", "/v2/auth/app/blobs/uploads/"),
                             ("DELETE", "/v2/auth/app/manifests/v1"),
                             ("GET", "/v2/_catalog")]:
            r = reader.request(method, path)
            assert r.status_code == 403, (method, path)
            assert error_codes(r) == ["DENIED"]
    with as_role(guarded, "busy") as busy:
        r = busy.get("/v2/")
        assert r.status_code == 429
        assert error_codes(r) == ["TOOMANYREQUESTS"]
        assert r.headers["Retry-After"] == "1"


def test_mount_without_pull_on_the_source_opens_a_session(guarded: RegistryServer) -> None:
    with as_role(guarded, "writer") as writer:
        digest = Api(writer).blob("secret/source", b"secret layer")
    with as_role(guarded, "own:mine/app") as mine:
        r = mine.post("/v2/mine/app/blobs/uploads/",
                      params={"mount": digest, "from": "secret/source"})
        assert r.status_code == 202, r.text
        assert mine.head(f"/v2/mine/app/blobs/{digest}").status_code == 404


def test_a_busy_upload_session_is_429(tmp_path: Path) -> None:
    server = RegistryServer(tmp_path / "root", workers=1).start()
    try:
        with server.client() as first, server.client() as second:
            location = first.post("/v2/busy/app/blobs/uploads/").headers["Location"]
            started = threading.Event()

            def slow_body() -> Iterator[bytes]:
                yield b"a" * 1000
                started.set()
                time.sleep(10)
                yield b"b"

            results: list[httpx.Response] = []
            streamer = threading.Thread(
                target=lambda: results.append(first.patch(location, content=slow_body())))
            streamer.start()
            assert started.wait(10)
            time.sleep(0.5)
            r = second.patch(location, content=b"c")
            assert r.status_code == 429, r.text
            assert error_codes(r) == ["TOOMANYREQUESTS"]
            streamer.join(30)
            assert results and results[0].status_code == 202
            assert second.get(location).headers["Range"] == "0-1000"
    finally:
        server.stop()


VALID_NAMES = ["a", "a/b", "team/sub/app", "a.b", "a_b", "a__b", "a-b", "a---b", "0/1/2",
               "x" * 255, "/".join(["ab"] * 85)]
INVALID_NAMES = ["A", "a/B", "a//b", "a/", "a..b", "a._b", "_a", "a_", "-a", "a-", "a___b",
                 "a.-b", "x" * 256, "a b", "caf\u00e9", "a/.b", "a:b", "a@b", "a."]


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_names(client: httpx.Client, name: str) -> None:
    r = client.get(f"/v2/{name}/tags/list")
    assert r.status_code == 404, r.text
    assert error_codes(r) == ["NAME_UNKNOWN"]


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_names(client: httpx.Client, name: str) -> None:
    for method, path in [("GET", f"/v2/{name}/tags/list"),
                         ("GET", f"/v2/{name}/manifests/latest"),
                         ("POST", f"/v2/{name}/blobs/uploads/")]:
        r = client.request(method, path)
        assert r.status_code == 400, (name, method, path, r.text)
        assert error_codes(r) == ["NAME_INVALID"]


@pytest.mark.parametrize("tag", ["-x", ".x", "a" * 129, "a/b", "tag with space", "t\u00e9"])
def test_invalid_tags(api: Api, client: httpx.Client, repo: str, tag: str) -> None:
    pushed = api.image(repo, "ok")
    r = api.manifest(repo, tag, pushed.body)
    assert r.status_code in (400, 404), r.text
    assert error_codes(r)[0] in ("MANIFEST_INVALID", "UNSUPPORTED")
    r = client.get(f"/v2/{repo}/manifests/{tag}")
    assert r.status_code in (400, 404)


def garbage_requests(repo: str, upload: str) -> list[tuple[str, str, dict[str, object]]]:
    """(method, path, httpx keyword arguments) that a client should never turn into a 500."""
    digests = ["sha256:", "sha256:xyz", "SHA256:" + "a" * 64, "sha256:" + "A" * 64,
               "sha1:" + "a" * 40, ":", "sha256", "sha256:" + "a" * 65, "%00", "sha256:%2F"]
    out: list[tuple[str, str, dict[str, object]]] = []
    for d in digests:
        out += [("GET", f"/v2/{repo}/blobs/{d}", {}), ("HEAD", f"/v2/{repo}/blobs/{d}", {}),
                ("DELETE", f"/v2/{repo}/blobs/{d}", {}),
                ("GET", f"/v2/{repo}/manifests/{d}", {}),
                ("PUT", f"/v2/{repo}/manifests/{d}", {"content": b"{}"}),
                ("DELETE", f"/v2/{repo}/manifests/{d}", {}),
                ("GET", f"/v2/{repo}/referrers/{d}", {}),
                ("POST", f"/v2/{repo}/blobs/uploads/", {"params": {"digest": d}}),
                ("POST", f"/v2/{repo}/blobs/uploads/", {"params": {"mount": d}}),
                ("PUT", upload, {"params": {"digest": d}})]
    for cr in ("", "bytes", "-", "1-", "-1", "a-b", "5-2", "0-99999999999999999999999",
               "bytes=0-1", "0-1/2/3", "\u0660-\u0661"):
        out.append(("PATCH", upload, {"content": b"zz",
                                      "headers": {"Content-Range": cr.encode("utf-8")}}))
    for n in ("-1", "x", "1e3", "9" * 5000, "%ZZ", "", "0"):
        out += [("GET", f"/v2/{repo}/tags/list?n={n}&last=%ff%fe", {}),
                ("GET", f"/v2/_catalog?n={n}&last=%01", {})]
    bodies = [b"", b"null", b"{}", b"[]", b"\x00" * 100, json.dumps({"mediaType": 5}).encode(),
              json.dumps({"schemaVersion": "2", "config": []}).encode(),
              json.dumps({"schemaVersion": 2, "manifests": [{"digest": 1}]}).encode(),
              json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "config": {"mediaType": "x", "digest": "sha256:" + "0" * 64,
                                     "size": "big"}}).encode(),
              json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": {},
                          "config": {"mediaType": "x", "digest": "sha256:" + "0" * 64,
                                     "size": 1}, "subject": "x"}).encode(),
              json.dumps({"a": 1e999}).encode(), b'{"a": NaN}', b'{"a": "\\ud800"}',
              os.urandom(5000)]
    for body in bodies:
        for ctype in (OCI_MANIFEST, "application/vnd.oci.image.index.v1+json", "text/html",
                      "", "application/vnd.docker.distribution.manifest.v1+prettyjws",
                      "\u00ff/\u00fe"):
            out.append(("PUT", f"/v2/{repo}/manifests/t", {
                "content": body, "headers": {"Content-Type": ctype.encode("utf-8")}}))
    out += [
        ("GET", f"/v2/{repo}/manifests/latest", {"content": b"a body on a GET"}),
        ("GET", f"/v2/{repo}/blobs/{sha256(b'')}", {"content": b"x" * 100000}),
        ("GET", f"/v2/{repo}/manifests/latest", {"headers": {"Accept": ";;;,,,q=x;=;"}}),
        ("GET", f"/v2/{repo}/blobs/{sha256(b'')}", {"headers": {"Range": "bytes=--,-"}}),
        ("GET", f"/v2/{repo}/blobs/{sha256(b'')}", {"headers": {"Range": "bytes=" + "9" * 5000
                                                                + "-"}}),
        ("GET", f"/v2/{repo}/blobs/{sha256(b'')}", {"headers": {"Range": "bytes=-" + "9" * 5000}}),
        ("PATCH", upload, {"content": b"x", "headers": {"Content-Range": "0-" + "9" * 5000}}),
        ("PROPFIND", f"/v2/{repo}/manifests/latest", {}),
        ("OPTIONS", "/v2/", {}),
        ("TRACE", f"/v2/{repo}/tags/list", {}),
        ("GET", "/v2/" + "a/" * 3000 + "tags/list", {}),
        ("GET", "/v2/%00/tags/list", {}),
        ("GET", "/v2/a%2Fb/tags/list", {}),
        ("GET", "/v2/../../etc/passwd", {}),
        ("GET", "/v2/a/manifests/" + "x" * 10000, {}),
        ("POST", f"/v2/{repo}/blobs/uploads/", {"params": {"mount": "", "from": ""}}),
        ("POST", f"/v2/{repo}/blobs/uploads/", {"params": {"from": "x"}}),
        ("POST", f"/v2/{repo}/blobs/uploads/", {"params": [("digest", "a"), ("digest", "b")]}),
        ("PUT", upload, {}),
        ("PUT", f"/v2/{repo}/blobs/uploads/", {}),
        ("DELETE", f"/v2/{repo}/blobs/uploads/", {}),
        ("GET", f"/v2/{repo}/referrers/{sha256(b'')}?artifactType=%ff", {}),
        ("PUT", f"/v2/{repo}/manifests/t?tag=&tag=%00", {"content": b"{}"}),
        ("GET", "/metrics?x=%ff", {}),
        ("GET", "/healthz", {"content": b"body"}),
    ]
    return out


def test_garbage_is_never_a_500(registry: RegistryServer, client: httpx.Client, api: Api,
                                repo: str) -> None:
    api.image(repo, "latest")
    upload = client.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
    failures = []
    for method, path, kwargs in garbage_requests(repo, upload):
        r = client.request(method, path, **kwargs)  # type: ignore[arg-type]
        if r.status_code >= 500:
            failures.append((method, path[:80], kwargs.get("headers"), r.status_code, r.text))
        elif r.status_code >= 400 and method != "HEAD":
            assert r.headers.get("Content-Type") == "application/json", (method, path, r.text)
            error_codes(r)
    assert not failures, failures
    for raw in RAW_REQUESTS:
        status = raw_status(registry.port, raw)
        assert status is None or status < 500, (raw[:80], status)
    assert "Traceback" not in registry.log()
    assert client.get("/v2/").status_code == 200


RAW_REQUESTS = [
    b"GET /v2/\x01/tags/list HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/a/tags/list?n=\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/\xc3\x28/manifests/x HTTP/1.1\r\nHost: x\r\n\r\n",
    b"PUT /v2/a/manifests/t HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Content-Type: \xff\xfe\r\n\r\n{\"a\":",
    b"PATCH /v2/a/blobs/uploads/x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"zz\r\n",
    b"GET /v2/a/blobs/sha256:00 HTTP/1.1\r\nHost: x\r\nRange: \xff\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"PUT /v2/a/manifests/t HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 5000
    + b"\r\n\r\n{}",
    b"GET /v2/ HTTP/1.1\r\nHost: \xff\x00bad\r\n\r\n",
    b"POST /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: [::1\r\nX-Forwarded-Proto: gopher\r\n"
    b"Content-Length: 0\r\n\r\n",
    b"FOO /v2/a/manifests/latest HTTP/1.1\r\nHost: x\r\n\r\n",
]


def raw_status(port: int, request: bytes) -> int | None:
    """Send bytes as they are; the status of the answer (``None`` if the server just closed
    the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    if not data:
        return None
    return int(data.split(b" ", 2)[1])


def test_unexpected_failure_is_a_logged_500_with_a_json_body(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with RegistryServer(root) as server, server.client() as c:
        pushed = Api(c).image("corrupt/app", "v1")
    stored = root / "content" / "blobs" / "sha256" / pushed.digest.split(":")[1]
    stored.write_bytes(b"x" * len(pushed.body))
    with RegistryServer(root, port=server.port) as server, server.client() as c:
        r = c.get("/v2/corrupt/app/manifests/v1")
        assert r.status_code == 500
        assert error_codes(r) == ["UNKNOWN"]
        assert r.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
        assert c.head("/v2/corrupt/app/manifests/v1").status_code == 200
    log = server.log()
    assert "Traceback" in log and "DigestMismatch" in log
    assert re.search(r"registry\.access GET /v2/corrupt/app/manifests/v1 500 ", log)
