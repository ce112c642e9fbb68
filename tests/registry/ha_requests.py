"""Requests the high-availability tests make through the balancer: uploads resumed from
what the registry acknowledged, pushes started over while it answers 503, and the 503 the
spec asks for while a backend is away."""

from __future__ import annotations

import hashlib
import subprocess
import time

import httpx
import pytest

from tests.registry.server import Api, error_codes, sha256


def payload(size: int, seed: str = "") -> bytes:
    """Reproducible bytes."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha512(f"{seed}{i}".encode()).digest() * 16
        i += 1
    return bytes(out[:size])


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a peer and fail with its output when it fails."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def assert_unavailable(response: httpx.Response) -> None:
    """A 503 with ``Retry-After`` and the spec's JSON error body saying UNAVAILABLE."""
    assert response.status_code == 503, (response.status_code, response.text)
    assert response.headers["Content-Type"] == "application/json", response.headers
    assert int(response.headers["Retry-After"]) >= 1
    assert error_codes(response) == ["UNAVAILABLE"], response.text


def upload_path(client: httpx.Client, repo: str) -> str:
    """Open an upload session; its path."""
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    return httpx.URL(r.headers["Location"]).path


def offset(client: httpx.Client, path: str, patience: float = 60) -> int:
    """The bytes the registry has acknowledged for an upload (``Range``), asking again while
    it answers 503 (each one shaped as the spec says)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            r = client.get(path)
        except httpx.TransportError:
            r = None
        if r is not None and r.status_code == 204:
            return int(r.headers["Range"].split("-")[1]) + 1
        if r is not None and r.status_code != 503 and r.status_code != 502:
            pytest.fail(f"upload status answered {r.status_code}: {r.text}")
        if r is not None and r.status_code == 503 and r.headers.get("Content-Type") \
                == "application/json":
            assert_unavailable(r)
        if time.monotonic() >= deadline:
            pytest.fail("the upload's status did not come back")
        time.sleep(0.5)


def resume(client: httpx.Client, path: str, data: bytes, chunk: int,
           patience: float = 60) -> httpx.Response:
    """Send ``data`` from what the registry acknowledged on, ``chunk`` bytes a PATCH, then
    the closing PUT; a failed request is retried from the acknowledged offset again."""
    deadline = time.monotonic() + patience
    while True:
        pos = offset(client, path)
        try:
            while pos < len(data):
                end = min(pos + chunk, len(data))
                r = client.patch(path, content=data[pos:end], headers={
                    "Content-Range": f"{pos}-{end - 1}",
                    "Content-Type": "application/octet-stream"})
                if r.status_code != 202:
                    raise RuntimeError(f"PATCH answered {r.status_code}: {r.text}")
                pos = end
            r = client.put(path, params={"digest": sha256(data)})
            if r.status_code == 201:
                return r
            raise RuntimeError(f"PUT answered {r.status_code}: {r.text}")
        except (httpx.TransportError, RuntimeError) as exc:
            if time.monotonic() >= deadline:
                pytest.fail(f"the upload did not complete: {exc}")
            time.sleep(0.5)


def push_image(api: Api, repo: str, tag: str, patience: float = 60) -> object:
    """Push a small image, starting over while the registry answers 503."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return api.image(repo, tag)
        except (AssertionError, httpx.TransportError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


# Real clients.


