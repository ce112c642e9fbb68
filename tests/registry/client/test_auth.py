"""The pieces of registry authentication: ``WWW-Authenticate`` parsing, scope merging,
token lifetimes and upload ``Range`` headers."""

from __future__ import annotations

import httpx
import pytest

from registry.client.auth import merge_scopes, parse_challenges, token_lifetime
from registry.client.upload import upload_range_end

pytestmark = pytest.mark.unit


def test_challenges() -> None:
    [bearer] = parse_challenges([
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:a/b:pull repository:c:pull,push",error="insufficient_scope"'])
    assert bearer.scheme == "bearer" and bearer.realm == "https://auth.example/token"
    assert bearer.service == "registry.example" and bearer.error == "insufficient_scope"
    assert bearer.scopes == ("repository:a/b:pull", "repository:c:pull,push")
    [basic] = parse_challenges(['Basic realm="quoted \\"realm\\""'])
    assert basic.scheme == "basic" and basic.realm == 'quoted "realm"'
    both = parse_challenges(['Basic realm="x", Bearer realm="https://t",service=s'])
    assert [(c.scheme, c.realm) for c in both] == [("basic", "x"), ("bearer", "https://t")]
    assert both[1].service == "s"
    assert parse_challenges(["", "   "]) == []


def test_scopes_are_merged_per_resource() -> None:
    assert merge_scopes(["repository:a:push", "repository:a:pull"],
                        ["repository:b:pull", "registry:catalog:*", "junk"]) == (
        "registry:catalog:*", "repository:a:pull,push", "repository:b:pull")
    assert merge_scopes(["repository:host:5000/x:pull"]) == ("repository:host:5000/x:pull",)


def test_token_lifetimes() -> None:
    assert token_lifetime(300) == 290
    assert token_lifetime(None) == token_lifetime("junk") == token_lifetime(-5) == 50
    assert 0 < token_lifetime(1) < 1


def test_upload_ranges() -> None:
    def response(value: str | None) -> httpx.Response:
        return httpx.Response(202, headers={"Range": value} if value else {})

    assert upload_range_end(response("0-1023"), 1024) == 1024
    assert upload_range_end(response("bytes=0-99"), 0) == 100
    assert upload_range_end(response("0-0"), 0) == 0
    assert upload_range_end(response("0-0"), 1) == 1
    assert upload_range_end(response(None), 77) == 77
