"""The management pages in a real browser (Debian's headless chromium through
chromium-driver and Selenium) against a real ``registry serve --tls``: a system admin looks
at the usage charts, makes a project, adds a member, makes a robot account and copies its
secret, adds an immutability rule, reads the GC page and the users; a developer is refused
the robots page with a message; a project admin whose role was taken away meanwhile is
refused a change with a message and nothing changes. Pages render without console errors.
The screenshots ``docs/ui/admin-*.png`` are made here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.registry.projects_env import USERS, registry_cmd
from tests.registry.ui.browser import WAIT_SECONDS, Browser, describe
from tests.registry.ui.test_admin_pages import PROJECT, AdminSite, members, post
from tests.registry.ui.test_admin_pages import site as site  # the fixture

ADMIN = "/ui/admin"


@pytest.fixture
def ui(browser: Browser, site: AdminSite) -> Iterator[Browser]:
    """The session's browser pointed at this module's registry, logged out."""
    browser.base = site.server.url
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


def _go(ui: Browser, selector: str) -> None:
    """Click what loads another page, and wait until the new page replaced this one."""
    old = ui.find("main")
    ui.wait_for(selector).click()
    WebDriverWait(ui.driver, WAIT_SECONDS).until(expected_conditions.staleness_of(old))
    ui.wait_for("main")


def _login(ui: Browser, user: str) -> None:
    ui.open("/ui/login")
    ui.wait_for("#username").send_keys(user)
    ui.find("#password").send_keys(USERS[user])
    _go(ui, "#login-submit")
    assert ui.text("#viewer-name") == user


def _logout(ui: Browser) -> None:
    _go(ui, "#logout")
    ui.wait_for("#login-link")


def _flash(ui: Browser) -> str:
    return ui.text("p.flash")


def test_a_system_admin_manages_the_registry(ui: Browser, site: AdminSite) -> None:
    done = registry_cmd(site.server.root, "gc", "--grace", "0")
    assert done.returncode == 0, done.stderr
    _login(ui, "root")
    _go(ui, "header nav a[href='/ui/admin/']")
    assert ui.path == f"{ADMIN}/"
    chart = ui.wait_for("svg.usage-chart")
    assert PROJECT in chart.get_attribute("aria-label") + chart.text
    assert "of 1.0 MiB" in chart.text
    ui.screenshot("admin-overview")
    _clean(ui, "the overview")

    _go(ui, "#nav-admin-projects")
    ui.wait_for("#new-project-name").send_keys("browser-made")
    ui.find("#new-project-quota").send_keys("5MiB")
    _go(ui, "#create-project-submit")
    assert _flash(ui) == "project browser-made created (private, quota 5.0 MiB)"
    assert ui.find("tr[data-project='browser-made']")
    _go(ui, "tr[data-project='acme'] a")
    assert ui.path == f"{ADMIN}/projects/{PROJECT}"
    ui.wait_for("#member-name").send_keys("carol")
    Select(ui.find("#member-role")).select_by_value("developer")
    _go(ui, "#add-member-submit")
    assert _flash(ui) == f"carol added to project {PROJECT} as developer"
    assert "developer" in ui.text("tr[data-member='carol']")
    assert members(site, PROJECT)["carol"] == "developer"
    assert len(ui.find_all("svg.usage-chart")) == 2
    ui.screenshot("admin-project")
    _clean(ui, "the project page")

    _go(ui, "#tab-robots")
    ui.wait_for("#robot-name").send_keys("deploy")
    ui.find("#robot-action-push").click()
    ui.find("#robot-description").send_keys("deploys the app")
    _go(ui, "#create-robot-submit")
    assert _flash(ui).startswith(f"robot robot${PROJECT}+deploy created")
    secret = ui.find("#robot-secret").get_attribute("value")
    assert site.token_status(f"robot${PROJECT}+deploy", secret) == 200
    ui.grant_clipboard()
    ui.find("button[data-copy='robot-secret']").click()
    assert ui.clipboard() == secret
    assert "enabled" in ui.text(f"tr[data-robot='robot${PROJECT}+deploy']")
    ui.screenshot("admin-robots")
    _go(ui, f"button[data-toggle-robot='robot${PROJECT}+deploy']")
    assert _flash(ui) == f"robot robot${PROJECT}+deploy disabled"
    assert site.token_status(f"robot${PROJECT}+deploy", secret) == 401
    ui.find(f"tr[data-robot='robot${PROJECT}+deploy'] details summary").click()
    _go(ui, f"button[data-delete-robot='robot${PROJECT}+deploy']")
    assert _flash(ui) == f"robot robot${PROJECT}+deploy deleted"
    _clean(ui, "the robots page")

    _go(ui, "#tab-policies")
    ui.wait_for("#immutable-tags").send_keys("release-*")
    _go(ui, "#add-immutable-submit")
    assert "tags 'release-*'" in _flash(ui)
    _go(ui, "#plan-retention-submit")
    assert _flash(ui).startswith("dry run: a retention run would remove 0")
    ui.screenshot("admin-policies")
    rule = ui.find("#immutable-table tbody tr").get_attribute("data-rule")
    ui.find(f"#immutable-table tr[data-rule='{rule}'] details summary").click()
    _go(ui, f"button[data-remove-immutable='{rule}']")
    assert _flash(ui) == f"immutability rule {rule} removed"
    _clean(ui, "the tag rules page")

    _go(ui, "#nav-admin-gc")
    assert "Idle." in ui.text("#gc-state")
    assert ui.find_all("#gc-runs tr.gc-run")
    ui.screenshot("admin-gc")
    _go(ui, "#nav-admin-users")
    assert "system admin" in ui.text("tr[data-user='root']")
    ui.screenshot("admin-users")
    _go(ui, "#nav-admin-audit")
    assert "member.add" in ui.text("#audit-table")
    _clean(ui, "the GC, users and audit log pages")
    _logout(ui)


def test_refusals_in_the_browser_say_why(ui: Browser, site: AdminSite) -> None:
    _login(ui, "dev")
    ui.open(f"{ADMIN}/projects/{PROJECT}")
    assert "your role: developer" in ui.text("#project-name")
    assert not ui.find_all("#add-member") and not ui.find_all("#tab-robots")
    ui.open(f"{ADMIN}/projects/{PROJECT}/robots")
    assert ui.text("#error-message") == (
        f"refused: dev may not manage the robots of project {PROJECT}: it needs role admin "
        "or higher and has role developer")
    ui.screenshot("admin-refused")
    _only_refusals(ui, 403)
    _logout(ui)

    _login(ui, "padmin")
    ui.open(f"{ADMIN}/projects/{PROJECT}")
    Select(ui.wait_for("#visibility-select")).select_by_value("public")
    with site.browser_like("root") as root:  # meanwhile, padmin loses its admin role
        r = post(root, f"{ADMIN}/projects/{PROJECT}", op="add_member", member="padmin",
                 role="developer")
        assert r.status_code == 200
    try:
        _go(ui, "#visibility-submit")
        assert _flash(ui) == (f"refused: padmin may not change project {PROJECT}: it needs "
                              "role admin or higher and has role developer")
        assert "private" in ui.text("#visibility")
        _only_refusals(ui, 403)
    finally:
        with site.browser_like("root") as root:
            post(root, f"{ADMIN}/projects/{PROJECT}", op="add_member", member="padmin",
                 role="admin")
    with site.api() as api:
        assert api.get(f"/api/v1/projects/{PROJECT}").json()["public"] is False
    _logout(ui)
