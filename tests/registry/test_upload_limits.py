"""Uploads announcing absurd lengths are refused before their body is read: 413
SIZE_INVALID naming the limit (``max_blob_bytes``, or the store's free space less
``min_free_bytes``), and nothing is stored. Raw sockets, so the client never sends more
than a few bytes of the announced body."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from registry.testing.processes import RegistryProcess, ours
from tests.registry.server import sha256

TERABYTE = 10**12
MIB = 1024 * 1024
SOCKET_TIMEOUT = 30


@dataclass(frozen=True)
class Answer:
    """A raw HTTP answer."""

    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, object]:
        """The first entry of the OCI error body."""
        return json.loads(self.body)["errors"][0]  # type: ignore[no-any-return]


def raw_request(proc: RegistryProcess, method: str, path: str, headers: dict[str, str],
                body_start: bytes = b"x" * 4096) -> Answer:
    """Send the head of a request and the first bytes of its body, then read the answer
    (the connection must be answered and closed without the rest of the body)."""
    with socket.create_connection((proc.host, proc.port), timeout=SOCKET_TIMEOUT) as s:
        head = f"{method} {path} HTTP/1.1\r\nHost: {proc.address}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        s.sendall(head.encode() + body_start)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk, f"connection closed without an answer: {data!r}"
            data += chunk
        head_bytes, _, rest = data.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        fields = {k.strip().lower(): v.strip()
                  for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(fields.get("content-length", "0"))
        while len(rest) < length:
            chunk = s.recv(65536)
            assert chunk, "connection closed in the middle of the answer"
            rest += chunk
        status = int(lines[0].split()[1])
        if status == 413:
            assert fields.get("connection") == "close"
            assert s.recv(65536) == b"", "the server keeps reading the refused body"
        return Answer(status, fields, rest[:length])


def ingest_bytes(root: Path) -> int:
    """Bytes in files under the data directory's content store."""
    return sum(p.stat().st_size for p in (root / "content").rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryProcess, Path]]:
    """A registry with ``max_blob_bytes`` = 1 MiB."""
    root = tmp_path_factory.mktemp("limits") / "root"
    proc = ours(root, env={"REGISTRY_MAX_BLOB_BYTES": str(MIB)}).start()
    yield proc, root
    proc.stop()


def test_a_terabyte_post_is_refused_at_once(limited: tuple[RegistryProcess, Path]) -> None:
    proc, root = limited
    before = ingest_bytes(root)
    answer = raw_request(proc, "POST", f"/v2/limits/post/blobs/uploads/?digest={sha256(b'x')}",
                         {"Content-Length": str(TERABYTE),
                          "Content-Type": "application/octet-stream"})
    assert answer.status == 413
    error = answer.error()
    assert error["code"] == "SIZE_INVALID"
    assert "max_blob_bytes = 1048576" in str(error["message"])
    assert "limits/post" in str(error["message"])
    assert error["detail"] == {"repository": "limits/post", "announced": TERABYTE,
                               "max_blob_bytes": MIB}
    assert ingest_bytes(root) == before
    with httpx.Client(base_url=proc.url, timeout=30) as c:
        assert c.head(f"/v2/limits/post/blobs/{sha256(b'x')}").status_code == 404
        assert "limits/post" not in c.get("/v2/_catalog").json()["repositories"]
        small = b"a small blob"
        r = c.post("/v2/limits/post/blobs/uploads/", params={"digest": sha256(small)},
                   content=small)
        assert r.status_code == 201, r.text


def test_patch_and_put_past_the_limit_are_refused(limited: tuple[RegistryProcess, Path]
                                                  ) -> None:
    proc, root = limited
    with httpx.Client(base_url=proc.url, timeout=30) as c:
        r = c.post("/v2/limits/patch/blobs/uploads/")
        assert r.status_code == 202
        location = r.headers["Location"].removeprefix(proc.url)
        r = c.patch(location, content=b"first", headers={"Content-Range": "0-4"})
        assert r.status_code == 202
        location = r.headers["Location"].removeprefix(proc.url)
    before = ingest_bytes(root)
    answer = raw_request(proc, "PATCH", location, {"Content-Length": str(TERABYTE),
                                                   "Content-Type": "application/octet-stream"})
    assert answer.status == 413 and answer.error()["code"] == "SIZE_INVALID"
    answer = raw_request(proc, "PATCH", location, {"Content-Length": str(MIB),
                                                   "Content-Range": f"5-{MIB + 4}"})
    assert answer.status == 413
    assert answer.error()["detail"]["announced"] == MIB + 5  # type: ignore[index]
    answer = raw_request(proc, "PUT", f"{location}&digest={sha256(b'x')}"
                         if "?" in location else f"{location}?digest={sha256(b'x')}",
                         {"Content-Length": str(TERABYTE)})
    assert answer.status == 413 and answer.error()["code"] == "SIZE_INVALID"
    assert ingest_bytes(root) == before
    with httpx.Client(base_url=proc.url, timeout=30) as c:
        r = c.get(location)
        assert r.status_code == 204 and r.headers["Range"] == "0-4"
        rest = b" and the rest"
        r = c.put(location, params={"digest": sha256(b"first" + rest)}, content=rest)
        assert r.status_code == 201, r.text


def test_more_than_the_free_space_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with ours(root, env={"REGISTRY_MIN_FREE_BYTES": str(2**60)}) as proc:
        answer = raw_request(proc, "POST", "/v2/limits/free/blobs/uploads/?digest="
                             + sha256(b"x"), {"Content-Length": "100"}, b"x" * 10)
        assert answer.status == 413
        error = answer.error()
        assert error["code"] == "SIZE_INVALID"
        assert "min_free_bytes = 1152921504606846976" in str(error["message"])
        assert error["detail"]["available"] == 0  # type: ignore[index]
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            r = c.post("/v2/limits/free/blobs/uploads/")
            assert r.status_code == 202
    with ours(root) as proc:
        for announced in (10**17, 10**19 - 1):
            answer = raw_request(proc, "POST", "/v2/limits/free/blobs/uploads/?digest="
                                 + sha256(b"x"), {"Content-Length": str(announced)})
            assert answer.status == 413
            assert "bytes free beyond min_free_bytes = 1073741824" in str(
                answer.error()["message"])
            assert answer.error()["detail"]["announced"] == announced  # type: ignore[index]


def test_an_httpx_client_streaming_a_terabyte_gets_the_answer(
        limited: tuple[RegistryProcess, Path]) -> None:
    proc, root = limited
    before = ingest_bytes(root)
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(1024):
            sent += 64 * 1024
            yield b"x" * (64 * 1024)

    with httpx.Client(base_url=proc.url, timeout=30) as c:
        r = c.post("/v2/limits/stream/blobs/uploads/", params={"digest": sha256(b"x")},
                   content=body(), headers={"Content-Length": str(TERABYTE)})
    assert r.status_code == 413 and r.json()["errors"][0]["code"] == "SIZE_INVALID"
    assert sent < 64 * 1024 * 1024
    assert ingest_bytes(root) == before
