"""The browsing pages over HTTPS against the real ``registry serve --tls`` of the UI tests:
pages of tags and repositories, search, an index's platforms, deleting a manifest, a
refusal for a viewer without the delete action; and (on servers of their own) the UI on by
default and ``ui = false``."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

from registry.testing.processes import ours
from tests.registry.server import Api
from tests.registry.ui.conftest import PRIVATE, PUBLIC, UIRegistry, csrf_of, login


def _tags_on(page: str) -> list[str]:
    return re.findall(r'data-tag="([^"]+)"', page)


def test_tags_come_in_pages_and_can_be_filtered(ui_registry: UIRegistry,
                                                http: httpx.Client) -> None:
    repo = f"{PUBLIC}/many-{uuid.uuid4().hex[:6]}"
    with ui_registry.pusher("dev", repo) as c:
        api = Api(c)
        image = api.image(repo, "t000")
        for i in range(1, 62):
            r = api.manifest(repo, f"t{i:03d}", image.body)
            assert r.status_code == 201, r.text
    first = http.get(f"/ui/r/{repo}")
    assert first.status_code == 200
    assert _tags_on(first.text) == [f"t{i:03d}" for i in range(50)]
    assert "Page 1 of 2" in first.text and "62 tags" in first.text
    second = http.get(f"/ui/r/{repo}", params={"page": 2})
    assert _tags_on(second.text) == [f"t{i:03d}" for i in range(50, 62)]
    found = http.get(f"/ui/r/{repo}", params={"q": "t06"})
    assert _tags_on(found.text) == ["t060", "t061"]
    assert 'href="?q=&amp;page=2"' in first.text


def test_repositories_search_and_an_index_lists_its_platforms(
        ui_registry: UIRegistry, http: httpx.Client) -> None:
    repo = f"{PUBLIC}/multi-{uuid.uuid4().hex[:6]}"
    with ui_registry.pusher("dev", repo) as c:
        api = Api(c)
        index = api.index(repo, "latest", [api.image(repo), api.image(repo)])
    listed = http.get(f"/ui/p/{PUBLIC}", params={"q": repo.split("/")[1]})
    assert re.findall(r'class="repository-link">([^<]+)<', listed.text) == [repo]
    tags = http.get(f"/ui/r/{repo}")
    assert "linux/arch0, linux/arch1" in tags.text
    page = http.get(f"/ui/r/{repo}/-/manifest/latest")
    assert page.status_code == 200
    assert index.digest in page.text and page.text.count("linux/arch") == 2


def test_an_admin_deletes_a_manifest_with_its_tags(ui_registry: UIRegistry,
                                                   http: httpx.Client) -> None:
    repo = f"{PRIVATE}/gone-{uuid.uuid4().hex[:6]}"
    with ui_registry.pusher("dev", repo) as c:
        api = Api(c)
        image = api.image(repo, "a")
        api.image(repo, "other")
        assert api.manifest(repo, "b", image.body).status_code == 201
    assert login(http, "root").status_code == 303
    confirm = http.get(f"/ui/r/{repo}/-/delete", params={"ref": image.digest})
    assert confirm.status_code == 200
    assert "and the tags pointing at it: <strong>a, b</strong>" in confirm.text
    done = http.post(f"/ui/r/{repo}/-/delete",
                     data={"ref": image.digest, "csrf": csrf_of(confirm.text)})
    assert done.status_code == 303
    assert done.headers["location"].endswith("?deleted=manifest+" +
                                             image.digest.replace(":", "%3A"))
    assert _tags_on(http.get(f"/ui/r/{repo}").text) == ["other"]
    with ui_registry.pusher("dev", repo) as c:
        assert c.get(f"/v2/{repo}/manifests/{image.digest}").status_code == 404


def test_a_developer_without_delete_rights_is_refused(ui_registry: UIRegistry,
                                                      http: httpx.Client) -> None:
    assert login(http, "dev").status_code == 303
    page = http.get(f"/ui/r/{PRIVATE}/app")
    assert "a.delete-tag" not in page.text and "Delete</a>" not in page.text
    refused = http.get(f"/ui/r/{PRIVATE}/app/-/delete", params={"ref": "v1"})
    assert refused.status_code == 403
    assert ("dev may not delete in skunkworks/app: no rule or project role grants delete on "
            "skunkworks/app: user dev has role developer in project skunkworks, which "
            "allows pull,push") in refused.text
    form = http.get("/ui/")
    posted = http.post(f"/ui/r/{PRIVATE}/app/-/delete",
                       data={"ref": "v1", "csrf": csrf_of(form.text)})
    assert posted.status_code == 403
    with ui_registry.pusher("dev", f"{PRIVATE}/app") as c:
        assert "v1" in c.get(f"/v2/{PRIVATE}/app/tags/list").json()["tags"]


@contextlib.contextmanager
def _local_server(tmp_path: Path, **env: str) -> Iterator[httpx.Client]:
    server = ours(tmp_path / "root", workers=1, env=env).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client
    finally:
        server.stop()


def test_ui_false_serves_the_api_only(tmp_path: Path) -> None:
    with _local_server(tmp_path, REGISTRY_UI="false") as client:
        assert client.get("/v2/").status_code == 200
        for path in ("/", "/ui/", "/ui/login", "/ui/static/ui.css"):
            r = client.get(path, follow_redirects=False)
            assert r.status_code == 404, path
            assert json.loads(r.text)["errors"][0]["code"] == "UNSUPPORTED"


def test_the_ui_is_on_by_default_and_unknown_pages_are_html_404s(tmp_path: Path) -> None:
    with _local_server(tmp_path) as client:
        root = client.get("/", headers={"Accept": "text/html,*/*;q=0.8"},
                          follow_redirects=False)
        assert root.status_code == 302 and root.headers["location"] == "/ui/"
        api_client = client.get("/", headers={"Accept": "*/*"})
        assert api_client.status_code == 404
        assert json.loads(api_client.text)["errors"][0]["code"] == "UNSUPPORTED"
        assert client.get("/ui/static/ui.css").headers["content-type"].startswith("text/css")
        assert "open registry (no authentication)" in client.get("/ui/").text
        missing = client.get("/ui/r/nothing/here")
        assert missing.status_code == 404
        assert "repository nothing/here does not exist" in missing.text
        assert client.get("/ui/no/such/page").status_code == 404
