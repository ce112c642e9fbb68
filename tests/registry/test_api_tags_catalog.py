"""end-8a/8b and the catalog: sorted listings, ``n``/``last`` pagination, ``Link``."""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx

from tests.registry.server import Api, error_codes

LINK = re.compile(r'^<([^>]+)>; rel="next"$')


def tag_all(api: Api, repo: str, tags: list[str]) -> None:
    pushed = api.image(repo, tags[0])
    for tag in tags[1:]:
        assert api.manifest(repo, tag, pushed.body).status_code == 201


def test_tags_are_sorted(api: Api, client: httpx.Client, repo: str) -> None:
    tags = ["v10", "latest", "V2", "a_b", "1.0", "v1", "_x"]
    tag_all(api, repo, tags)
    r = client.get(f"/v2/{repo}/tags/list")
    assert r.status_code == 200
    assert r.json() == {"name": repo, "tags": sorted(tags)}
    assert "Link" not in r.headers


def test_tags_pagination_with_link(api: Api, client: httpx.Client, repo: str) -> None:
    tags = [f"t{i:02d}" for i in range(7)]
    tag_all(api, repo, tags)
    r = client.get(f"/v2/{repo}/tags/list", params={"n": 3})
    assert r.json()["tags"] == tags[:3]
    link = LINK.match(r.headers["Link"])
    assert link is not None
    assert link.group(1) == f"/v2/{repo}/tags/list?n=3&last=t02"
    seen: list[str] = list(r.json()["tags"])
    url = link.group(1)
    while url:
        r = client.get(url)
        assert r.status_code == 200
        seen += r.json()["tags"]
        match = LINK.match(r.headers.get("Link", ""))
        url = match.group(1) if match else ""
    assert seen == tags
    r = client.get(f"/v2/{repo}/tags/list", params={"n": 7})
    assert r.json()["tags"] == tags and "Link" not in r.headers
    r = client.get(f"/v2/{repo}/tags/list", params={"last": "t04"})
    assert r.json()["tags"] == tags[5:]
    r = client.get(f"/v2/{repo}/tags/list", params={"n": 2, "last": "t04"})
    assert r.json()["tags"] == ["t05", "t06"]
    assert "Link" not in r.headers
    r = client.get(f"/v2/{repo}/tags/list", params={"n": 2, "last": "zzz"})
    assert r.json()["tags"] == []


def test_n_zero_is_an_empty_list_without_link(api: Api, client: httpx.Client, repo: str) -> None:
    tag_all(api, repo, ["a", "b"])
    r = client.get(f"/v2/{repo}/tags/list", params={"n": 0})
    assert r.status_code == 200
    assert r.json() == {"name": repo, "tags": []}
    assert "Link" not in r.headers


def test_huge_n_is_clamped(api: Api, client: httpx.Client, repo: str) -> None:
    tag_all(api, repo, ["a", "b"])
    for n in ("1000000", "99999999999999999999999999999999"):
        r = client.get(f"/v2/{repo}/tags/list", params={"n": n})
        assert r.status_code == 200
        assert r.json()["tags"] == ["a", "b"]


def test_bad_n_is_400(client: httpx.Client, api: Api, repo: str) -> None:
    tag_all(api, repo, ["a"])
    for n in ("-1", "abc", "1.5", "", " 3", "٣", "0x10"):
        r = client.get(f"/v2/{repo}/tags/list", params={"n": n})
        assert r.status_code == 400, n
        assert error_codes(r) == ["PAGINATION_NUMBER_INVALID"]


def test_tags_of_an_unknown_repository(client: httpx.Client, repo: str) -> None:
    r = client.get(f"/v2/{repo}/tags/list")
    assert r.status_code == 404
    assert error_codes(r) == ["NAME_UNKNOWN"]
    assert repo in r.json()["errors"][0]["message"]


def test_repository_with_blobs_only_has_no_tags(api: Api, client: httpx.Client,
                                                repo: str) -> None:
    api.blob(repo, b"just a blob")
    r = client.get(f"/v2/{repo}/tags/list")
    assert r.status_code == 200
    assert r.json() == {"name": repo, "tags": []}


def catalog_all(client: httpx.Client, n: int) -> list[str]:
    names: list[str] = []
    url = f"/v2/_catalog?n={n}"
    while url:
        r = client.get(url)
        assert r.status_code == 200
        page = r.json()["repositories"]
        assert len(page) <= n
        names += page
        match = LINK.match(r.headers.get("Link", ""))
        url = match.group(1) if match else ""
    return names


def test_catalog_lists_repositories_sorted_and_paginated(api: Api, client: httpx.Client,
                                                         repo: str) -> None:
    mine = [f"{repo}/c{i}" for i in range(5)] + [f"{repo}/a/b/c"]
    for name in mine:
        api.blob(name, b"x")
    full = client.get("/v2/_catalog").json()["repositories"]
    assert full == sorted(full)
    assert set(mine) <= set(full)
    assert catalog_all(client, 2) == full
    r = client.get("/v2/_catalog", params={"n": 2, "last": f"{repo}/c1"})
    assert r.json()["repositories"] == [f"{repo}/c2", f"{repo}/c3"]
    assert LINK.match(r.headers["Link"]).group(1) == (
        f"/v2/_catalog?n=2&last={quote(repo + '/c3', safe='')}")
    r = client.get("/v2/_catalog", params={"n": 0})
    assert r.json() == {"repositories": []}
    assert "Link" not in r.headers


def test_catalog_bad_n(client: httpx.Client) -> None:
    r = client.get("/v2/_catalog", params={"n": "-5"})
    assert r.status_code == 400
    assert error_codes(r) == ["PAGINATION_NUMBER_INVALID"]
