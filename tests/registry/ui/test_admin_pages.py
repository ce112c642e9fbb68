"""The management pages over HTTPS against a real ``registry serve --tls``: each action
changes what the management API then reports (the same services), each refusal names what
was refused and changes nothing, every form needs the session's CSRF token, hostile input is
shown escaped, and anonymous visitors are sent to log in without learning a project name."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from registry.projects.model import format_size
from tests.registry.projects_env import USERS, eventually, registry_cmd, start_project_server
from tests.registry.server import Api
from tests.registry.test_auth_server import SERVICE, AuthServer
from tests.registry.ui.conftest import csrf_of, login

PROJECT = "acme"
HOSTILE = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
RAW_MARKERS = ("<script>alert", "<img src=x", "onerror=alert(1)>")
ADMIN = "/ui/admin"
CONFIG = 'admins = ["root"]\n'


def _setup(cmd: Any) -> None:
    cmd("project", "create", PROJECT, "--quota", "1MiB")
    for user, role in (("padmin", "admin"), ("maint", "maintainer"), ("dev", "developer"),
                       ("guest", "guest")):
        cmd("project", "member", "add", PROJECT, user, "--role", role)


@dataclass(frozen=True)
class AdminSite:
    """The registry of these tests: project acme (private, 1 MiB quota) with padmin
    (admin), maint (maintainer), dev (developer) and guest (guest), and acme/app:v1."""

    server: AuthServer

    @contextmanager
    def browser_like(self, user: str | None = None, password: str | None = None
                     ) -> Iterator[httpx.Client]:
        """A client with its own cookies, logged in as ``user`` through the login form."""
        with self.server.client(follow_redirects=False) as client:
            if user is not None:
                assert login(client, user, password).status_code == 303
            yield client

    def api(self, user: str = "root") -> httpx.Client:
        """A management API client with ``user``'s password."""
        return self.server.client(auth=(user, USERS[user]))

    def token_status(self, user: str, password: str) -> int:
        """The status of ``GET /token`` with these credentials."""
        with self.server.client() as c:
            return c.get("/token", params={"service": SERVICE,
                                           "scope": f"repository:{PROJECT}/app:pull"},
                         auth=(user, password)).status_code


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminSite]:
    """See :class:`AdminSite`."""
    server = start_project_server(tmp_path_factory.mktemp("ui-admin"), config=CONFIG,
                                  setup=_setup)
    try:
        token = server.token("dev", f"repository:{PROJECT}/app:pull,push",
                             password=USERS["dev"])
        with server.as_token(token) as c:
            Api(c).image(f"{PROJECT}/app", "v1", layers=3)
        yield AdminSite(server)
    finally:
        server.stop()


def post(client: httpx.Client, path: str, **fields: str) -> httpx.Response:
    """Post ``fields`` with the CSRF token of the page at ``path`` (a GET first; of the
    project page for ``…/delete``)."""
    page = client.get(path.removesuffix("/delete"))
    assert page.status_code == 200, page.text[:2000]
    return client.post(path, data={"csrf": csrf_of(page.text), **fields})


def flashes(response: httpx.Response) -> list[tuple[str, str]]:
    """The messages at the top of a page, unescaped."""
    return [(kind, html.unescape(text)) for kind, text in re.findall(
        r'<p class="flash (\w+)" role="status">([^<]*)</p>', response.text)]


def error_of(response: httpx.Response) -> str:
    """The message of an error page, unescaped."""
    found = re.search(r'id="error-message"[^>]*>([^<]*)<', response.text)
    assert found, response.text[:2000]
    return html.unescape(found.group(1))


def assert_escaped(page: str) -> None:
    """No hostile marker reached ``page`` unescaped."""
    for marker in RAW_MARKERS:
        assert marker not in page, f"{marker!r} reached the page unescaped"


def members(site: AdminSite, project: str) -> dict[str, str]:
    """The project's members and roles, as the management API reports them."""
    with site.api() as api:
        r = api.get(f"/api/v1/projects/{project}/members")
    assert r.status_code == 200, r.text
    return {m["name"]: m["role"] for m in r.json()}


def test_anonymous_visitors_are_sent_to_log_in_and_see_no_project_names(
        site: AdminSite) -> None:
    with site.browser_like() as anonymous:
        for path in ("/", "/projects", f"/projects/{PROJECT}", f"/projects/{PROJECT}/robots",
                     f"/projects/{PROJECT}/policies", "/users", "/gc", "/account"):
            r = anonymous.get(ADMIN + path)
            assert r.status_code == 401, (path, r.status_code)
            assert "log in to" in error_of(r) and "/ui/login?next=" in r.text
            if path != f"/projects/{PROJECT}" and not path.startswith(f"/projects/{PROJECT}/"):
                assert PROJECT not in r.text, path
        r = anonymous.post(f"{ADMIN}/projects", data={"name": "sneaky"})
        assert r.status_code == 403  # no session, no CSRF token: nothing is created
    with site.api() as api:
        assert api.get("/api/v1/projects/sneaky").status_code == 404


def test_usage_charts_show_what_projects_and_repositories_hold(site: AdminSite) -> None:
    with site.api() as api:
        usage = api.get(f"/api/v1/projects/{PROJECT}/usage").json()
    assert usage["bytes"] > 0 and usage["quota"] == 1 << 20
    with site.browser_like("root") as root:
        listing = root.get(f"{ADMIN}/projects")
        assert listing.status_code == 200
        assert '<svg class="usage-chart"' in listing.text
        caption = f"{format_size(usage['bytes'])} of 1.0 MiB"
        assert caption in listing.text and 'class="chart-quota"' in listing.text
        assert f'href="{ADMIN}/projects/{PROJECT}"' in listing.text
        page = root.get(f"{ADMIN}/projects/{PROJECT}")
        assert page.status_code == 200
        assert page.text.count('<svg class="usage-chart"') == 2
        assert "<title>app</title>" in page.text  # the repository's bar, named after the project
        overview = root.get(f"{ADMIN}/")
        assert overview.status_code == 200 and caption in overview.text
    with site.browser_like("dev") as dev:
        page = dev.get(f"{ADMIN}/projects/{PROJECT}")
        assert page.status_code == 200 and "<title>app</title>" in page.text
        assert 'id="add-member"' not in page.text and 'id="quota-form"' not in page.text
        assert "your role: developer" in page.text


def test_system_admin_creates_a_project_and_manages_its_members(site: AdminSite) -> None:
    with site.browser_like("root") as root:
        r = post(root, f"{ADMIN}/projects", name="made-here", quota="2MiB")
        assert r.status_code == 200 and flashes(r) == [
            ("ok", "project made-here created (private, quota 2.0 MiB)")]
        here = f"{ADMIN}/projects/made-here"
        r = post(root, here, op="add_member", member="dev", role="developer")
        assert flashes(r) == [("ok", "dev added to project made-here as developer")]
        r = post(root, here, op="add_member", member="dev", role="maintainer")
        assert flashes(r) == [("ok", "dev now has role maintainer in project made-here")]
        r = post(root, here, op="add_member", member="@team-a", role="guest")
        assert r.status_code == 200
        assert members(site, "made-here") == {"root": "admin", "dev": "maintainer",
                                              "@team-a": "guest"}
        r = post(root, here, op="add_member", member="nobody-here", role="guest")
        assert r.status_code == 404 and "user 'nobody-here' does not exist" in flashes(r)[0][1]
        r = post(root, here, op="add_member", member="dev", role="owner")
        assert r.status_code == 400 and "is not a role" in flashes(r)[0][1]
        r = post(root, here, op="remove_member", member="@team-a")
        assert flashes(r) == [("ok", "@team-a (guest) removed from project made-here")]
        r = post(root, here, op="visibility", visibility="public")
        assert flashes(r) == [("ok", "project made-here is public now")]
        r = post(root, here, op="quota", quota="none")
        assert flashes(r) == [("ok", "the quota of project made-here is unlimited now")]
        with site.api() as api:
            shown = api.get("/api/v1/projects/made-here").json()
        assert (shown["public"], shown["quota"]) == (True, None)
        assert members(site, "made-here") == {"root": "admin", "dev": "maintainer"}

        r = post(root, f"{here}/delete", confirm="made-her")
        assert r.status_code == 400 and "type the project's name" in flashes(r)[0][1]
        r = post(root, f"{here}/delete", confirm="made-here")
        assert r.status_code == 200 and flashes(r) == [("ok", "project made-here deleted")]
        assert r.url.path == f"{here}/delete" and 'id="projects-table"' in r.text
        r = post(root, f"{ADMIN}/projects/{PROJECT}/delete", confirm=PROJECT)
        assert r.status_code == 409 and "still has 1 repository" in flashes(r)[0][1]
    with site.api() as api:
        assert api.get("/api/v1/projects/made-here").status_code == 404
        assert api.get(f"/api/v1/projects/{PROJECT}").status_code == 200


def test_refused_actions_say_why_and_change_nothing(site: AdminSite) -> None:
    before = members(site, PROJECT)
    here = f"{ADMIN}/projects/{PROJECT}"
    with site.browser_like("dev") as dev:
        r = post(dev, here, op="add_member", member="carol", role="admin")
        assert r.status_code == 403
        assert flashes(r) == [("error", "refused: dev may not manage the members of project "
                                        "acme: it needs role admin or higher and has role "
                                        "developer")]
        r = post(dev, f"{ADMIN}/projects", name="devs-own")
        assert r.status_code == 403
        assert "dev may not create project devs-own: only system admins" in flashes(r)[0][1]
        r = post(dev, f"{here}/delete", confirm=PROJECT)
        assert r.status_code == 403 and "may not delete project acme" in flashes(r)[0][1]
        for path in ("/robots", "/webhooks", "/activity"):
            r = dev.get(here + path)
            assert r.status_code == 403 and "needs role" in error_of(r), path
        for path in ("/users", "/gc", "/access"):
            r = dev.get(ADMIN + path)
            assert r.status_code == 403 and "only system admins" in error_of(r), path
        r = dev.post(f"{ADMIN}/users", data={"csrf": csrf_of(dev.get(here).text),
                                             "op": "add", "user": "sneak", "password": "x",
                                             "again": "x"})
        assert r.status_code == 403 and "only system admins" in error_of(r)
    with site.browser_like("padmin") as padmin:
        r = post(padmin, here, op="quota", quota="10GiB")
        assert r.status_code == 403
        assert "padmin may not set the quota of project acme: only system admins" in \
            flashes(r)[0][1]
    with site.browser_like("outsider") as outsider:
        r = outsider.get(here)
        assert r.status_code == 403 and "it is private and the caller is no member" in \
            error_of(r)
        assert PROJECT not in outsider.get(f"{ADMIN}/projects").text.replace(
            "/ui/admin/projects", "")
    assert members(site, PROJECT) == before
    with site.api() as api:
        assert api.get("/api/v1/projects/devs-own").status_code == 404
        assert api.get(f"/api/v1/projects/{PROJECT}").json()["quota"] == 1 << 20
        assert api.get("/api/v1/projects").json()  # still answers


def test_forms_without_the_session_csrf_token_are_refused(site: AdminSite) -> None:
    here = f"{ADMIN}/projects/{PROJECT}"
    with site.browser_like("root") as root, site.browser_like("padmin") as other:
        foreign = csrf_of(other.get(here).text)
        for data in ({}, {"csrf": ""}, {"csrf": foreign}):
            r = root.post(here, data={**data, "op": "add_member", "member": "carol",
                                      "role": "admin"})
            assert r.status_code == 403 and "CSRF token" in error_of(r)
        token = csrf_of(root.get(here).text)
        r = root.post(here, data={"csrf": token, "op": "add_member", "member": "carol",
                                  "role": "guest"},
                      headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and "another site" in error_of(r)
    assert "carol" not in members(site, PROJECT)


def test_robot_accounts_are_made_shown_once_disabled_rotated_and_deleted(
        site: AdminSite) -> None:
    here = f"{ADMIN}/projects/{PROJECT}/robots"
    full = f"robot${PROJECT}+ci"
    with site.browser_like("padmin") as padmin:
        r = post(padmin, here, op="create", robot="ci", action_pull="on", action_push="on",
                 expires_days="30", description=HOSTILE)
        assert r.status_code == 200, r.text[:2000]
        assert flashes(r) == [("ok", f"robot {full} created: copy its secret now, it is "
                                     "not shown again")]
        assert_escaped(r.text)
        secret = html.unescape(re.search(r'id="robot-secret" readonly value="([^"]+)"',
                                         r.text).group(1))
        assert site.token_status(full, secret) == 200
        page = padmin.get(here)
        assert secret not in page.text and 'id="robot-secret"' not in page.text
        assert_escaped(page.text)
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page.text
        with site.api("padmin") as api:
            (listed,) = api.get(f"/api/v1/projects/{PROJECT}/robots").json()
        assert (listed["name"], listed["actions"], listed["description"]) == (
            full, ["pull", "push"], HOSTILE)

        r = post(padmin, here, op="disable", robot=full)
        assert flashes(r) == [("ok", f"robot {full} disabled")]
        assert site.token_status(full, secret) == 401
        post(padmin, here, op="enable", robot=full)
        assert site.token_status(full, secret) == 200
        r = post(padmin, here, op="rotate", robot=full)
        fresh = html.unescape(re.search(r'id="robot-secret" readonly value="([^"]+)"',
                                        r.text).group(1))
        assert fresh != secret
        assert site.token_status(full, secret) == 401
        assert site.token_status(full, fresh) == 200
        r = post(padmin, here, op="create", robot="ci", action_pull="on")
        assert r.status_code == 400 and flashes(r)[0][0] == "error"
        r = post(padmin, here, op="create", robot="none-ticked")
        assert r.status_code == 400 and "tick at least one" in flashes(r)[0][1]
        r = post(padmin, here, op="delete", robot="robot$other+ci")
        assert r.status_code == 400 and "not a robot of project acme" in flashes(r)[0][1]
        r = post(padmin, here, op="delete", robot=full)
        assert flashes(r) == [("ok", f"robot {full} deleted")]
        assert site.token_status(full, fresh) == 401


def test_tag_rules_for_maintainers_read_only_for_guests(site: AdminSite) -> None:
    here = f"{ADMIN}/projects/{PROJECT}/policies"
    with site.browser_like("maint") as maint:
        r = post(maint, here, op="add_immutable", repositories="app", tags="v*")
        assert r.status_code == 200 and flashes(r)[0][0] == "ok", flashes(r)
        r = post(maint, here, op="add_immutable", tags="v[")
        assert r.status_code == 400 and flashes(r)[0][1].startswith("tags")
        r = post(maint, here, op="add_retention", keep="latest", count="5")
        assert r.status_code == 200 and "keep the 5 most recently pushed" in flashes(r)[0][1]
        r = post(maint, here, op="add_retention", keep="latest", count="0")
        assert r.status_code == 400 and "count" in flashes(r)[0][1]
        r = post(maint, here, op="plan_retention")
        assert flashes(r) == [("ok", "dry run: a retention run would remove 0 manifest(s) "
                                     "and keep 1")]
        assert 'id="plan-table"' in r.text
    with site.api() as api:
        rules = api.get(f"/api/v1/projects/{PROJECT}/immutabletagrules").json()
        assert [(x["repositories"], x["tags"]) for x in rules] == [("app", "v*")]
        retention = api.get(f"/api/v1/projects/{PROJECT}/retentions").json()
        assert [(x["kind"], x["count"]) for x in retention] == [("latest", 5)]
    with site.browser_like("guest") as guest:
        page = guest.get(here)
        assert page.status_code == 200 and "<code>v*</code>" in page.text
        assert 'id="add-immutable"' not in page.text
        r = guest.post(here, data={"csrf": csrf_of(page.text), "op": "remove_immutable",
                                   "rule": str(rules[0]["id"])})
        assert r.status_code == 403 and "needs role maintainer" in flashes(r)[0][1]
    with site.browser_like("maint") as maint:
        r = post(maint, here, op="remove_immutable", rule=str(rules[0]["id"]))
        assert flashes(r) == [("ok", f"immutability rule {rules[0]['id']} removed")]
        r = post(maint, here, op="remove_retention", rule=str(retention[0]["id"]))
        assert r.status_code == 200
        r = post(maint, here, op="remove_retention", rule="999")
        assert r.status_code == 404 and "no retention rule 999" in flashes(r)[0][1]

        token = site.server.token("dev", f"repository:{PROJECT}/app:pull,push",
                                  password=USERS["dev"])
        with site.server.as_token(token) as c:
            Api(c).image(f"{PROJECT}/app", "v2")
        r = post(maint, here, op="add_retention", repositories="app", tags="v*",
                 keep="latest", count="1")
        assert r.status_code == 200
        r = post(maint, here, op="run_retention")
        assert flashes(r) == [("ok", "retention removed 1 manifest(s), skipped 0; run "
                                     "registry gc to free their blobs")]
        assert re.search(r"<td>acme/app</td><td><code>sha256:[0-9a-f]{12}</code></td>"
                         r"<td>v1</td>", r.text), r.text[-3000:]
        with site.server.as_token(token) as c:
            assert c.get(f"/v2/{PROJECT}/app/tags/list").json()["tags"] == ["v2"]
        rule = re.search(r'name="op" value="remove_retention"><input type="hidden" '
                         r'name="rule" value="(\d+)"', r.text).group(1)
        post(maint, here, op="remove_retention", rule=rule)


def test_webhooks_are_added_listed_escaped_and_removed(site: AdminSite) -> None:
    here = f"{ADMIN}/projects/{PROJECT}/webhooks"
    url = 'https://ci.example/hook?q="><img/src=x/onerror=alert(1)><script>alert(2)</script>'
    with site.browser_like("padmin") as padmin:
        r = post(padmin, here, op="add", url=url, hook="ci", event_push="on",
                 secret="s3cret")
        assert r.status_code == 200 and flashes(r)[0][1].startswith("webhook ci added")
        assert_escaped(r.text)
        r = post(padmin, here, op="add", url="ftp://x", hook="bad", event_push="on")
        assert r.status_code == 400 and "url" in flashes(r)[0][1]
        with site.api("padmin") as api:
            (hook,) = api.get(f"/api/v1/projects/{PROJECT}/webhooks").json()
        assert (hook["name"], hook["url"], hook["events"], hook["signed"]) == (
            "ci", url, ["PUSH_ARTIFACT"], True)
        r = post(padmin, here, op="remove", hook="ci")
        assert flashes(r) == [("ok", "webhook ci removed")]
        r = post(padmin, here, op="remove", hook="ci")
        assert r.status_code == 400 and "has no such webhook" in flashes(r)[0][1]


def test_users_are_added_changed_and_removed_and_their_sessions_end(
        site: AdminSite) -> None:
    here = f"{ADMIN}/users"
    with site.browser_like("root") as root:
        r = post(root, here, op="add", user="webuser", password="first-pw",
                 again="first-pw", groups="team-a, ops")
        assert flashes(r) == [("ok", "user webuser added")]
        r = post(root, here, op="add", user="webuser", password="x", again="x")
        assert r.status_code == 400 and "exists already" in flashes(r)[0][1]
        r = post(root, here, op="add", user="other", password="a", again="b")
        assert r.status_code == 400 and "the two passwords differ" in flashes(r)[0][1]
        r = post(root, here, op="add", user="bad name", password="a", again="a")
        assert r.status_code == 400 and "is not valid" in flashes(r)[0][1]
        assert site.token_status("webuser", "first-pw") == 200

        with site.browser_like("webuser", "first-pw") as user:
            assert user.get(f"{ADMIN}/account").status_code == 200
            r = post(root, here, op="set", user="webuser", password="second-pw",
                     again="second-pw", groups="ops")
            assert flashes(r) == [("ok", "user webuser: password and groups set; its "
                                         "sessions end")]
            assert user.get(f"{ADMIN}/account").status_code == 401
        assert site.token_status("webuser", "first-pw") == 401
        assert site.token_status("webuser", "second-pw") == 200
        page = root.get(here)
        assert re.search(r'data-user="webuser">\s*<td>webuser</td>\s*<td>ops</td>', page.text)

        r = post(root, here, op="remove", user="root")
        assert r.status_code == 400 and "your own account" in flashes(r)[0][1]
        r = post(root, here, op="remove", user="webuser")
        assert flashes(r) == [("ok", "user webuser removed; its sessions and logins end")]
        assert site.token_status("webuser", "second-pw") == 401
        r = post(root, here, op="remove", user="webuser")
        assert r.status_code == 404
    def audited() -> None:  # the server writes its audit events off the request path
        with site.api() as api:
            logged = api.get("/api/v1/audit", params={"user": "root", "limit": 50}).json()
        changes = [(e["action"], e["detail"]) for e in logged
                   if e["action"].startswith("user.")]
        assert ("user.remove", "user=webuser") in changes
        assert ("user.add", "user=webuser groups=ops,team-a") in changes
        assert {e["address"] for e in logged if "user=webuser" in e["detail"]} == \
            {"127.0.0.1"}

    eventually(audited)


def test_access_rules_and_what_one_user_may_do(site: AdminSite) -> None:
    with site.browser_like("root") as root:
        page = root.get(f"{ADMIN}/access")
        assert page.status_code == 200 and "admins (every action on every repository): root" \
            in html.unescape(page.text)
        page = root.get(f"{ADMIN}/access", params={"user": "dev"})
        text = html.unescape(page.text)
        assert "acme" in text and "developer" in text
        page = root.get(f"{ADMIN}/access", params={"user": HOSTILE})
        assert page.status_code == 200
        assert_escaped(page.text)


def test_cli_secrets_of_ones_own(site: AdminSite) -> None:
    with site.browser_like("guest") as guest:
        r = post(guest, f"{ADMIN}/account", op="create", label="laptop")
        assert flashes(r) == [("ok", "CLI secret made: copy it now, it is not shown again")]
        secret = html.unescape(re.search(r'id="cli-secret" readonly value="([^"]+)"',
                                         r.text).group(1))
        assert site.token_status("guest", secret) == 200
        secret_id = re.search(r'name="secret" value="([0-9a-f]+)"', r.text).group(1)
        r = post(guest, f"{ADMIN}/account", op="revoke", secret=secret_id)
        assert flashes(r) == [("ok", f"CLI secret {secret_id} revoked")]
        assert site.token_status("guest", secret) == 401
        r = post(guest, f"{ADMIN}/account", op="revoke", secret=secret_id)
        assert r.status_code == 404


def test_gc_page_shows_the_last_runs_of_registry_gc(site: AdminSite) -> None:
    done = registry_cmd(site.server.root, "gc", "--grace", "0")
    assert done.returncode == 0, done.stderr
    dry = registry_cmd(site.server.root, "gc", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    with site.browser_like("root") as root:
        page = root.get(f"{ADMIN}/gc")
        assert page.status_code == 200
        runs = re.findall(r'<tr class="gc-run">\s*<td>[^<]*</td>\s*<td class="state-(\w+)">',
                          page.text)
        assert runs and runs[0] == "done" and len(runs) == 1  # the dry run is not logged
        assert 'id="gc-state">Idle.' in page.text
        overview = root.get(f"{ADMIN}/")
        assert "Last run: started" in overview.text


def test_project_activity_for_maintainers(site: AdminSite) -> None:
    with site.browser_like("root") as root:
        post(root, f"{ADMIN}/projects/{PROJECT}", op="add_member", member="carol",
             role="guest")
        post(root, f"{ADMIN}/projects/{PROJECT}", op="remove_member", member="carol")
    with site.browser_like("maint") as maint:
        def logged() -> str:  # the server writes its audit events off the request path
            page = maint.get(f"{ADMIN}/projects/{PROJECT}/activity")
            assert page.status_code == 200
            text = html.unescape(page.text)
            assert "member.add" in text and "member=carol role=guest" in text
            assert "member.remove" in text and "<td>push</td>" in text
            return text

        eventually(logged)


def test_audit_log_for_system_admins(site: AdminSite) -> None:
    with site.browser_like("root") as root:
        def pushes() -> None:  # the server writes its audit events off the request path
            page = root.get(f"{ADMIN}/audit", params={"project": PROJECT, "user": "dev",
                                                      "since": "1d"})
            assert page.status_code == 200
            rows = re.findall(r"<tr><td>[^<]*</td><td>([^<]*)</td><td>([^<]*)</td>",
                              page.text)
            assert rows and ("push", "dev") in rows and {u for _, u in rows} == {"dev"}

        eventually(pushes)
        page = root.get(f"{ADMIN}/audit", params={"project": HOSTILE, "user": HOSTILE})
        assert page.status_code == 200 and "No events." in page.text
        assert_escaped(page.text)
        page = root.get(f"{ADMIN}/audit", params={"since": "yesterday"})
        assert page.status_code == 400 and "since 'yesterday'" in error_of(page)
    with site.browser_like("maint") as maint:
        page = maint.get(f"{ADMIN}/audit")
        assert page.status_code == 403 and "only system admins" in error_of(page)
