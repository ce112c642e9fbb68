"""The web UI's defences, over HTTPS against a real ``registry serve --tls``: hostile
labels, history lines and reflected input are shown escaped; forms without the session's
CSRF token (or sent from another site) are refused and change nothing; the session cookie
carries HttpOnly, Secure and SameSite; an anonymous visitor learns no private project's
name; the login lockout applies to the login form."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from tests.registry.projects_env import USERS
from tests.registry.server import Api
from tests.registry.ui.conftest import (
    LOCKED_USER,
    PRIVATE,
    PUBLIC,
    UIRegistry,
    csrf_of,
    login,
)
from tests.registry.ui.content import HOSTILE_IMG, HOSTILE_SCRIPT

RAW_MARKERS = ("<script>alert", "<img src=x", "onerror=alert(1)>")


def _assert_escaped(page: str) -> None:
    for marker in RAW_MARKERS:
        assert marker not in page, f"{marker!r} reached the page unescaped"


def test_hostile_labels_env_cmd_and_history_lines_are_escaped(
        ui_registry: UIRegistry, http: httpx.Client) -> None:
    assert login(http, "dev").status_code == 303
    digest = ui_registry.evil.pushed.digest
    page = http.get(f"/ui/r/{PRIVATE}/evil/-/manifest/{digest}")
    assert page.status_code == 200, page.text
    _assert_escaped(page.text)
    assert "&lt;script&gt;alert(&#39;label&#39;)&lt;/script&gt;" in page.text
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert page.text.count("RUN echo &lt;script&gt;") == 2, "layers and history list it"
    tags = http.get(f"/ui/r/{PRIVATE}/evil")
    assert tags.status_code == 200
    _assert_escaped(tags.text)


def test_reflected_input_is_escaped(ui_registry: UIRegistry, http: httpx.Client) -> None:
    hostile = quote(HOSTILE_IMG + HOSTILE_SCRIPT)
    for path in (f"/ui/p/{PUBLIC}?q={hostile}", f"/ui/r/{PUBLIC}/tools?q={hostile}",
                 f"/ui/p/{hostile}", f"/ui/r/{hostile}", f"/ui/{hostile}",
                 f"/ui/login?next={hostile}",
                 f"/ui/r/{PUBLIC}/tools/-/manifest/{hostile}"):
        page = http.get(path)
        assert page.status_code in (200, 404), (path, page.status_code)
        assert page.headers["content-type"].startswith("text/html"), path
        _assert_escaped(page.text)
    form = http.get("/ui/login")
    refused = http.post("/ui/login", data={"csrf": csrf_of(form.text), "username":
                                           HOSTILE_SCRIPT, "password": "x"})
    assert refused.status_code == 401
    _assert_escaped(refused.text)
    assert "&lt;script&gt;" in refused.text


def test_pages_forbid_inline_script_and_framing(http: httpx.Client) -> None:
    page = http.get("/ui/")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"


def test_session_cookie_flags(http: httpx.Client) -> None:
    first = http.get("/ui/")
    cookie = first.headers["set-cookie"]
    assert cookie.startswith("pybuild_ui=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=lax", "path=/"} <= flags, cookie
    logged_in = login(http, "dev")
    assert logged_in.status_code == 303, logged_in.text
    renewed = logged_in.headers["set-cookie"]
    assert renewed.split(";")[0] != cookie.split(";")[0], "a login starts a new session"
    assert {"httponly", "secure", "samesite=lax"} <= {
        p.strip().lower() for p in renewed.split(";")[1:]}


def test_login_without_or_with_a_foreign_csrf_token_is_refused(
        ui_registry: UIRegistry, http: httpx.Client) -> None:
    http.get("/ui/login")
    bare = http.post("/ui/login", data={"username": "dev", "password": USERS["dev"]})
    assert bare.status_code == 403
    assert "CSRF token is missing or stale" in bare.text
    with ui_registry.client() as other:
        foreign = csrf_of(other.get("/ui/login").text)
    stolen = http.post("/ui/login", data={"csrf": foreign, "username": "dev",
                                          "password": USERS["dev"]})
    assert stolen.status_code == 403
    assert 'id="login-link"' in http.get("/ui/").text, "still logged out"


def test_cross_site_delete_is_refused_and_deletes_nothing(
        ui_registry: UIRegistry, http: httpx.Client) -> None:
    repo = f"{PRIVATE}/csrf"
    with ui_registry.pusher("dev", repo) as c:
        Api(c).image(repo, "keep")
    assert login(http, "root").status_code == 303
    confirm = http.get(f"/ui/r/{repo}/-/delete", params={"ref": "keep"})
    assert confirm.status_code == 200, confirm.text
    token = csrf_of(confirm.text)
    forged = http.post(f"/ui/r/{repo}/-/delete", data={"ref": "keep"})
    assert forged.status_code == 403
    assert "CSRF" in forged.text
    other_site = http.post(f"/ui/r/{repo}/-/delete", data={"ref": "keep", "csrf": token},
                           headers={"Origin": "https://evil.example"})
    assert other_site.status_code == 403
    assert "from another site" in other_site.text
    with ui_registry.pusher("dev", repo) as c:
        assert c.get(f"/v2/{repo}/tags/list").json()["tags"] == ["keep"]
    done = http.post(f"/ui/r/{repo}/-/delete", data={"ref": "keep", "csrf": token},
                     headers={"Origin": ui_registry.url})
    assert done.status_code == 303, done.text
    with ui_registry.pusher("dev", repo) as c:
        assert c.get(f"/v2/{repo}/tags/list").json().get("tags") in (None, [])


def test_logout_needs_the_token_and_ends_the_session(http: httpx.Client) -> None:
    assert login(http, "dev").status_code == 303
    page = http.get("/ui/")
    assert 'id="viewer-name">dev<' in page.text
    assert http.post("/ui/logout", data={}).status_code == 403
    assert 'id="viewer-name">dev<' in http.get("/ui/").text
    out = http.post("/ui/logout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303
    assert 'id="login-link"' in http.get("/ui/").text


def test_anonymous_visitors_never_see_private_project_names(
        ui_registry: UIRegistry, http: httpx.Client) -> None:
    for path in ("/ui/", f"/ui/p/{PUBLIC}", f"/ui/r/{PUBLIC}/tools"):
        page = http.get(path)
        assert page.status_code == 200, path
        assert PRIVATE not in page.text, path
    assert PUBLIC in http.get("/ui/").text
    private = http.get(f"/ui/p/{PRIVATE}")
    missing = http.get("/ui/p/nosuchproject")
    assert private.status_code == missing.status_code == 404
    assert private.text.replace(PRIVATE, "X") == missing.text.replace("nosuchproject", "X")
    for path in (f"/ui/r/{PRIVATE}/app",
                 f"/ui/r/{PRIVATE}/app/-/manifest/{ui_registry.app.pushed.digest}"):
        refused = http.get(path)
        assert refused.status_code == 404, path
        assert "does not exist or you may not see it" in refused.text
        assert "sha256:" not in refused.text.replace(ui_registry.app.pushed.digest, "")


def test_a_member_sees_its_private_project_and_others_do_not(
        ui_registry: UIRegistry) -> None:
    with ui_registry.client() as member, ui_registry.client() as outsider:
        assert login(member, "guest").status_code == 303
        assert PRIVATE in member.get("/ui/").text
        assert member.get(f"/ui/r/{PRIVATE}/app").status_code == 200
        assert login(outsider, "carol").status_code == 303
        assert PRIVATE not in outsider.get("/ui/").text
        assert outsider.get(f"/ui/r/{PRIVATE}/app").status_code == 404


def test_the_login_lockout_applies_to_the_login_form(http: httpx.Client) -> None:
    for _ in range(3):
        wrong = login(http, LOCKED_USER, "wrong-password")
        assert wrong.status_code == 401
        assert "incorrect username or password" in wrong.text
    locked = login(http, LOCKED_USER)
    assert locked.status_code == 429, locked.text
    assert "retry after" in locked.text
    assert 'id="login-link"' in http.get("/ui/").text, "still logged out"


def _login_with(http: httpx.Client, user: str, secret: str) -> httpx.Response:
    form = http.get("/ui/login")
    return http.post("/ui/login", data={"csrf": csrf_of(form.text), "username": user,
                                        "password": secret})


def test_robot_accounts_and_cli_secrets_cannot_log_in(ui_registry: UIRegistry,
                                                      http: httpx.Client) -> None:
    with ui_registry.server.client(auth=("root", USERS["root"])) as admin:
        made = admin.post(f"/api/v1/projects/{PUBLIC}/robots",
                          json={"name": "uitest", "actions": "pull"})
        assert made.status_code == 201, made.text
        robot, robot_secret = made.json()["name"], made.json()["secret"]
    with ui_registry.server.client(auth=("carol", USERS["carol"])) as carol:
        made = carol.post("/api/v1/users/carol/secrets", json={"name": "ui-test"})
        assert made.status_code == 201, made.text
        cli_secret = made.json()["secret"]
    refused = _login_with(http, robot, robot_secret)
    assert refused.status_code == 401
    assert "robot accounts cannot log in" in refused.text
    refused = _login_with(http, "carol", cli_secret)
    assert refused.status_code == 401
    assert "CLI secrets cannot log in to the web UI: use the user&#39;s password" in \
        refused.text
    assert 'id="login-link"' in http.get("/ui/").text
    assert _login_with(http, "carol", USERS["carol"]).status_code == 303
    assert 'id="viewer-name">carol<' in http.get("/ui/").text


def test_login_redirects_only_inside_the_ui(http: httpx.Client) -> None:
    form = http.get("/ui/login")
    for target, expected in (("https://evil.example/", "/ui/"), ("//evil.example", "/ui/"),
                             (f"/ui/p/{PUBLIC}", f"/ui/p/{PUBLIC}")):
        http.cookies.clear()
        form = http.get("/ui/login")
        done = http.post("/ui/login", data={"csrf": csrf_of(form.text), "username": "dev",
                                            "password": USERS["dev"], "next": target})
        assert done.status_code == 303
        assert done.headers["location"] == expected
