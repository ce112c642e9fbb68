"""The management pages in a real browser (Debian's headless chromium through
chromium-driver and Selenium) against a real ``registry serve --tls``: a system admin looks
at the usage charts, makes a project, adds a member, makes a robot account and copies its
secret, adds an immutability rule, reads the GC page and the users; a developer is refused
the robots page with a message; a project admin whose role was taken away meanwhile is
refused a change with a message and nothing changes. Pages render without console errors.
The screenshots ``docs/ui/admin-*.png`` are made here."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.registry.projects_env import USERS, registry_cmd
from tests.registry.ui.browser import WAIT_SECONDS, Browser, describe
from tests.registry.ui.test_admin_pages import PROJECT, AdminSite, members, post
from tests.registry.ui.test_admin_pages import site as site  # the fixture

ADMIN = "/ui/admin"
T = TypeVar("T")


@pytest.fixture
def ui(browser: Browser, site: AdminSite) -> Iterator[Browser]:
    """The session's browser pointed at this module's registry, logged out."""
    browser.base = site.server.url
    _open(browser, "/ui/")
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


def _on(ui: Browser, selector: str, act: Callable[[WebElement], T]) -> T:
    return ui.on(selector, act)


def _type(ui: Browser, selector: str, text: str) -> None:
    _on(ui, selector, lambda e: e.send_keys(text))


def _press(ui: Browser, selector: str) -> None:
    """Click what changes nothing but this page (a checkbox, a details summary, a button
    of the page's script)."""
    _on(ui, selector, lambda e: e.click())


def _choose(ui: Browser, selector: str, value: str) -> None:
    _on(ui, selector, lambda e: Select(e).select_by_value(value))


def _loaded(ui: Browser) -> None:
    """Wait until a new page (one without the mark :func:`_go` leaves) has loaded."""
    WebDriverWait(ui.driver, WAIT_SECONDS, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return !window.adminTestMark && "
                                   "document.readyState === 'complete'"))
    _on(ui, "main", lambda e: None)


def _go(ui: Browser, selector: str) -> None:
    """Click what loads another page, and wait until the new page replaced this one."""
    ui.driver.execute_script("window.adminTestMark = true")
    _press(ui, selector)
    _loaded(ui)


def _count(ui: Browser, selector: str) -> int:
    """How many elements ``selector`` finds (asked of the page's own DOM)."""
    found: int = ui.driver.execute_script(
        "return document.querySelectorAll(arguments[0]).length", selector)
    return found


def _open(ui: Browser, path: str) -> None:
    ui.driver.get(ui.base + path)
    _loaded(ui)


def _login(ui: Browser, user: str) -> None:
    _open(ui, "/ui/login")
    _type(ui, "#username", user)
    _type(ui, "#password", USERS[user])
    _go(ui, "#login-submit")
    assert _text(ui, "#viewer-name") == user


def _logout(ui: Browser) -> None:
    _go(ui, "#logout")
    _on(ui, "#login-link", lambda e: None)


def _text(ui: Browser, selector: str) -> str:
    return _on(ui, selector, lambda e: str(e.text))


def _flash(ui: Browser) -> str:
    return _text(ui, "p.flash")


def test_a_system_admin_manages_the_registry(ui: Browser, site: AdminSite) -> None:
    done = registry_cmd(site.server.root, "gc", "--grace", "0")
    assert done.returncode == 0, done.stderr
    _login(ui, "root")
    _go(ui, "header nav a[href='/ui/admin/']")
    assert ui.path == f"{ADMIN}/"
    chart = _text(ui, "svg.usage-chart")
    assert PROJECT in chart and "of 1.0 MiB" in chart
    ui.screenshot("admin-overview")
    _clean(ui, "the overview")

    _go(ui, "#nav-admin-projects")
    _type(ui, "#new-project-name", "browser-made")
    _type(ui, "#new-project-quota", "5MiB")
    _go(ui, "#create-project-submit")
    assert _flash(ui) == "project browser-made created (private, quota 5.0 MiB)"
    assert _count(ui, "tr[data-project='browser-made']") == 1
    _go(ui, "tr[data-project='acme'] a")
    assert ui.path == f"{ADMIN}/projects/{PROJECT}"
    _type(ui, "#member-name", "carol")
    _choose(ui, "#member-role", "developer")
    _go(ui, "#add-member-submit")
    assert _flash(ui) == f"carol added to project {PROJECT} as developer"
    assert "developer" in _text(ui, "tr[data-member='carol']")
    assert members(site, PROJECT)["carol"] == "developer"
    assert _count(ui, "svg.usage-chart") == 2
    ui.screenshot("admin-project")
    _clean(ui, "the project page")

    _go(ui, "#tab-robots")
    _type(ui, "#robot-name", "deploy")
    _press(ui, "#robot-action-push")
    _type(ui, "#robot-description", "deploys the app")
    _go(ui, "#create-robot-submit")
    assert _flash(ui).startswith(f"robot robot${PROJECT}+deploy created")
    secret = _on(ui, "#robot-secret", lambda e: str(e.get_attribute("value")))
    assert site.token_status(f"robot${PROJECT}+deploy", secret) == 200
    ui.grant_clipboard()
    _press(ui, "button[data-copy='robot-secret']")
    assert ui.clipboard() == secret
    assert "enabled" in _text(ui, f"tr[data-robot='robot${PROJECT}+deploy']")
    ui.screenshot("admin-robots")
    _go(ui, f"button[data-toggle-robot='robot${PROJECT}+deploy']")
    assert _flash(ui) == f"robot robot${PROJECT}+deploy disabled"
    assert site.token_status(f"robot${PROJECT}+deploy", secret) == 401
    _press(ui, f"tr[data-robot='robot${PROJECT}+deploy'] details summary")
    _go(ui, f"button[data-delete-robot='robot${PROJECT}+deploy']")
    assert _flash(ui) == f"robot robot${PROJECT}+deploy deleted"
    _clean(ui, "the robots page")

    _go(ui, "#tab-policies")
    _type(ui, "#immutable-tags", "release-*")
    _go(ui, "#add-immutable-submit")
    assert "tags 'release-*'" in _flash(ui)
    _go(ui, "#plan-retention-submit")
    assert _flash(ui).startswith("dry run: a retention run would remove 0")
    ui.screenshot("admin-policies")
    rule = _on(ui, "#immutable-table tbody tr", lambda e: str(e.get_attribute("data-rule")))
    _press(ui, f"#immutable-table tr[data-rule='{rule}'] details summary")
    _go(ui, f"button[data-remove-immutable='{rule}']")
    assert _flash(ui) == f"immutability rule {rule} removed"
    _clean(ui, "the tag rules page")

    _go(ui, "#nav-admin-gc")
    assert "Idle." in _text(ui, "#gc-state")
    assert _count(ui, "#gc-runs tr.gc-run") > 0
    ui.screenshot("admin-gc")
    _go(ui, "#nav-admin-users")
    assert "system admin" in _text(ui, "tr[data-user='root']")
    ui.screenshot("admin-users")
    _go(ui, "#nav-admin-audit")
    assert "member.add" in _text(ui, "#audit-table")
    _clean(ui, "the GC, users and audit log pages")
    _logout(ui)


def test_refusals_in_the_browser_say_why(ui: Browser, site: AdminSite) -> None:
    _login(ui, "dev")
    _open(ui, f"{ADMIN}/projects/{PROJECT}")
    assert "your role: developer" in _text(ui, "#project-name")
    assert _count(ui, "#add-member") == 0 and _count(ui, "#tab-robots") == 0
    _open(ui, f"{ADMIN}/projects/{PROJECT}/robots")
    assert _text(ui, "#error-message") == (
        f"refused: dev may not manage the robots of project {PROJECT}: it needs role admin "
        "or higher and has role developer")
    ui.screenshot("admin-refused")
    _only_refusals(ui, 403)
    _logout(ui)

    _login(ui, "padmin")
    _open(ui, f"{ADMIN}/projects/{PROJECT}")
    _choose(ui, "#visibility-select", "public")
    with site.browser_like("root") as root:  # meanwhile, padmin loses its admin role
        r = post(root, f"{ADMIN}/projects/{PROJECT}", op="add_member", member="padmin",
                 role="developer")
        assert r.status_code == 200
    try:
        _go(ui, "#visibility-submit")
        assert _flash(ui) == (f"refused: padmin may not change project {PROJECT}: it needs "
                              "role admin or higher and has role developer")
        assert "private" in _text(ui, "#visibility")
        _only_refusals(ui, 403)
    finally:
        with site.browser_like("root") as root:
            post(root, f"{ADMIN}/projects/{PROJECT}", op="add_member", member="padmin",
                 role="admin")
    with site.api() as api:
        assert api.get(f"/api/v1/projects/{PROJECT}").json()["public"] is False
    _logout(ui)
