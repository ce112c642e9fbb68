"""The web UI in a real browser (Debian's headless chromium through chromium-driver and
Selenium) against a real ``registry serve --tls``: an image pushed with docker is browsed
down to its layers, its pull line copied, a tag deleted after the confirmation; a guest is
refused a deletion with a message; hostile content runs no script; every page renders
without console errors. The screenshots of docs/ui/ are made here."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import NoAlertPresentException

from tests.peers import Dockerd
from tests.registry.projects_env import USERS
from tests.registry.test_auth_policy_peers import DockerClient, image  # noqa: F401 - fixture
from tests.registry.ui.browser import Browser, describe
from tests.registry.ui.conftest import PRIVATE, PUBLIC, UIRegistry


@pytest.fixture
def ui(browser: Browser, ui_registry: UIRegistry) -> Iterator[Browser]:
    """The session's browser pointed at the UI registry, logged out, its console read."""
    browser.base = ui_registry.url
    browser.open("/ui/")
    browser.driver.delete_all_cookies()
    browser.console_errors()
    yield browser
    browser.driver.delete_all_cookies()


def _clean(ui: Browser, where: str) -> None:
    errors = ui.console_errors()
    assert not errors, f"console errors on {where}: {describe(errors)}"


def _only_refusals(ui: Browser, *statuses: int) -> None:
    """The console holds nothing but the failed loads of pages refused on purpose."""
    errors = ui.console_errors()
    wanted = [f"status of {s} " for s in statuses]
    odd = [e for e in errors if e.get("source") != "network"
           or not any(w in e.get("message", "") for w in wanted)]
    assert not odd, f"console errors: {describe(odd)}"
    assert len(errors) == len(statuses), describe(errors)


def _login(ui: Browser, user: str) -> None:
    ui.open("/ui/login")
    ui.wait_for("#username").send_keys(user)
    ui.find("#password").send_keys(USERS[user])
    ui.click("#login-submit")
    assert ui.text("#viewer-name") == user


def _logout(ui: Browser) -> None:
    ui.click("#logout")
    ui.wait_for("#login-link")


@pytest.fixture
def pushed(ui_registry: UIRegistry, image, dockerd: Dockerd,  # noqa: F811
           tmp_path: Path) -> Iterator[str]:
    """skunkworks/web-<random> with tags 1.0 and extra, pushed by docker as dev."""
    store, _, digest = image
    server = ui_registry.server
    repo = f"{PRIVATE}/web-{uuid.uuid4().hex[:8]}"
    refs = [f"{server.address}/{repo}:1.0", f"{server.address}/{repo}:extra"]
    client = DockerClient(server, tmp_path / "docker-config")
    try:
        client.load(store, digest, tmp_path / "image.tar", *refs)
        client("login", server.address, "-u", "dev", "--password-stdin",
               password=USERS["dev"])
        for ref in refs:
            client("push", ref)
        yield repo
    finally:
        client("rmi", *refs, check=False)
        client.close()


def test_browse_a_docker_pushed_image_copy_pull_line_delete_tag_and_be_refused(
        ui: Browser, ui_registry: UIRegistry, pushed: str) -> None:
    repo = pushed
    address = ui_registry.server.address

    ui.open("/ui/")
    assert PUBLIC in ui.text("#projects")
    assert PRIVATE not in ui.text("main")
    ui.screenshot("anonymous-projects")
    _clean(ui, "the anonymous projects page")

    _login(ui, "maint")
    rows = ui.text("#projects")
    assert PRIVATE in rows and "of 64.0 MiB" in rows
    ui.screenshot("projects")
    _clean(ui, "the projects page")

    ui.click(f'a.group-link[href="/ui/p/{PRIVATE}"]')
    ui.wait_for("#search").send_keys("web-")
    ui.click("#search-submit")
    links = [a.text for a in ui.find_all("a.repository-link")]
    assert repo in links and f"{PRIVATE}/app" not in links
    ui.screenshot("repositories")
    _clean(ui, "the repositories page")

    ui.click(f'a.repository-link[href="/ui/r/{repo}"]')
    assert {r.get_attribute("data-tag") for r in ui.find_all("tr.tag-row")} == \
        {"1.0", "extra"}
    ui.grant_clipboard()
    row = ui.find('tr.tag-row[data-tag="1.0"]')
    pull = row.find_element("css selector", "input.pull-line").get_attribute("value")
    assert pull == f"docker pull {address}/{repo}:1.0"
    row.find_element("css selector", "button.copy").click()
    assert ui.clipboard() == pull
    assert row.find_element("css selector", "button.copy").text == "Copied"
    ui.screenshot("tags")
    _clean(ui, "the tags page")

    ui.click('tr.tag-row[data-tag="1.0"] a.tag-link')
    layers = ui.find_all("#layers tr.layer")
    assert len(layers) == 1
    assert "busybox rootfs" in layers[0].text
    assert "B" in layers[0].find_elements("css selector", "td.num")[1].text
    assert "echo" in ui.text("#config")
    ui.screenshot("manifest-pushed-by-docker")
    _clean(ui, "the manifest page")

    ui.click("#back-to-tags")
    ui.click('tr.tag-row[data-tag="extra"] a.delete-tag')
    assert "Delete tag extra of " + repo in ui.text(".confirm")
    ui.screenshot("confirm-delete")
    ui.click("#confirm-delete")
    assert "Deleted tag extra." in ui.text(".flash.ok")
    assert {r.get_attribute("data-tag") for r in ui.find_all("tr.tag-row")} == {"1.0"}
    _clean(ui, "the tags page after deleting")
    with ui_registry.pusher("dev", repo) as c:
        assert c.get(f"/v2/{repo}/tags/list").json()["tags"] == ["1.0"]
    _logout(ui)

    _login(ui, "guest")
    ui.open(f"/ui/r/{repo}")
    assert not ui.find_all("a.delete-tag")
    assert "may not delete" in ui.text("#delete-refusal")
    ui.open(f"/ui/r/{repo}/-/delete?ref=1.0")
    message = ui.text("#error-message")
    assert message.startswith(f"refused: guest may not delete in {repo}: "), message
    assert "user guest has role guest in project skunkworks, which allows pull" in message
    ui.screenshot("refused")
    _only_refusals(ui, 403)
    _logout(ui)
    cookies = ui.cookies()
    assert cookies["pybuild_ui"]["httpOnly"] is True
    assert cookies["pybuild_ui"]["secure"] is True
    assert cookies["pybuild_ui"]["sameSite"] == "Lax"
    ui.open(f"/ui/r/{repo}")
    assert "does not exist or you may not see it" in ui.text("#error-message")
    _only_refusals(ui, 404)


def test_hostile_content_runs_no_script_and_referrers_show_as_a_tree(
        ui: Browser, ui_registry: UIRegistry) -> None:
    _login(ui, "dev")
    ui.open(f"/ui/r/{PRIVATE}/evil/-/manifest/{ui_registry.evil.pushed.digest}")
    with pytest.raises(NoAlertPresentException):
        ui.driver.switch_to.alert.text  # noqa: B018 - raises without an alert
    assert ui.find_all("main img") == []
    assert "<script>alert('label')</script>" in ui.text("#config")
    _clean(ui, "the hostile manifest page")

    ui.open(f"/ui/r/{PRIVATE}/app/-/manifest/{ui_registry.app.pushed.digest}")
    tree = ui.text("#referrers")
    for kind in ("application/vnd.dev.cosign.artifact.sig.v1+json", "application/spdx+json",
                 "application/vnd.in-toto+json"):
        assert kind in tree
    nested = ui.find_all("#referrers ul.tree ul.tree li.referrer")
    assert len(nested) == 1 and "in-toto" in nested[0].text
    fields = ui.text("#config")
    for expected in ('["/srv/app", "--serve"]', "MODE=production", "8080/tcp", "app"):
        assert expected in fields
    assert [row.text.split()[0] for row in ui.find_all("#layers tr.layer")] == ["1", "2", "3"]
    assert "RUN apt-get install -y curl" in ui.text("#layers")
    assert "ENV MODE=ui" in ui.text("#history")
    ui.screenshot("manifest")
    _clean(ui, "the manifest page with referrers")
