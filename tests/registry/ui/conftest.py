"""Fixtures of the web UI tests: one TLS registry with users, projects and content for the
session, a headless chromium, and HTTP clients that log in like a browser."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.registry.pg import SWITCH_ENV
from tests.registry.projects_env import USERS, start_project_server
from tests.registry.test_auth_server import AuthServer
from tests.registry.ui.browser import Browser
from tests.registry.ui.content import (
    HOSTILE_IMG,
    HOSTILE_SCRIPT,
    Image,
    push_image,
    push_referrers,
)

PRIVATE = "skunkworks"
PUBLIC = "pub"
CONFIG = """
admins = ["root"]
login_max_failures = 3
login_lockout = 300
"""
LOCKED_USER = "outsider"


def _setup(cmd) -> None:  # type: ignore[no-untyped-def]
    cmd("project", "create", PRIVATE, "--quota", "64MiB")
    cmd("project", "create", PUBLIC, "--public")
    for project in (PRIVATE, PUBLIC):
        cmd("project", "member", "add", project, "dev", "--role", "developer")
    cmd("project", "member", "add", PRIVATE, "guest", "--role", "guest")
    cmd("project", "member", "add", PRIVATE, "maint", "--role", "maintainer")


@dataclass(frozen=True)
class UIRegistry:
    """The registry of the UI tests and what it holds."""

    server: AuthServer
    app: Image
    evil: Image
    tools: Image

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT``."""
        return self.server.url

    def client(self) -> httpx.Client:
        """An HTTPS client (no cookies yet)."""
        return self.server.client(follow_redirects=False)

    def pusher(self, user: str, repo: str) -> httpx.Client:
        """A client holding ``user``'s token for pull, push and delete on ``repo``."""
        return self.server.as_token(self.server.token(
            user, f"repository:{repo}:pull,push,delete", password=USERS[user]))


@pytest.fixture(scope="session")
def ui_registry(tmp_path_factory: pytest.TempPathFactory,
                request: pytest.FixtureRequest) -> Iterator[UIRegistry]:
    """``registry serve --tls`` (two workers) with projects skunkworks (private, 64 MiB
    quota; dev developer, maint maintainer, guest guest) and pub (public; dev developer),
    users root (admin), dev, guest and others, and: skunkworks/app:v1 (config fields,
    three layers, a signature, an SBOM and its attestation), skunkworks/evil:v1 (hostile
    labels and history lines), pub/tools:1. Its metadata, users and sessions' key are in
    PostgreSQL with ``PYBUILD_TEST_METADATA=postgres``."""
    metadata_url = ""
    if os.environ.get(SWITCH_ENV, "sqlite") == "postgres":
        metadata_url = request.getfixturevalue("postgres").create_database("ui_suite")
    server = start_project_server(tmp_path_factory.mktemp("ui"), config=CONFIG,
                                  setup=_setup, metadata_url=metadata_url)
    try:
        registry = UIRegistry(server, *_content(server))
        yield registry
    finally:
        server.stop()


def _content(server: AuthServer) -> tuple[Image, Image, Image]:
    def pusher(repo: str) -> httpx.Client:
        return server.as_token(server.token(
            "dev", f"repository:{repo}:pull,push", password=USERS["dev"]))

    with pusher(f"{PRIVATE}/app") as c:
        app = push_image(c, f"{PRIVATE}/app", "v1", history=[
            "ADD rootfs.tar /", "RUN apt-get install -y curl", "COPY app /srv/app"],
            labels={"org.opencontainers.image.title": "app"},
            env=["PATH=/usr/bin:/bin", "MODE=production"], cmd=["/srv/app", "--serve"],
            user="app", ports=["8080/tcp"])
        push_referrers(c, f"{PRIVATE}/app", app.pushed)
    with pusher(f"{PRIVATE}/evil") as c:
        evil = push_image(c, f"{PRIVATE}/evil", "v1", history=[
            f"RUN echo {HOSTILE_SCRIPT}", f"COPY {HOSTILE_IMG} /"],
            labels={"title": HOSTILE_SCRIPT, HOSTILE_IMG: HOSTILE_IMG},
            env=[f"X={HOSTILE_IMG}"], cmd=[HOSTILE_SCRIPT])
    with pusher(f"{PUBLIC}/tools") as c:
        tools = push_image(c, f"{PUBLIC}/tools", "1", history=["ADD tools.tar /"])
    return app, evil, tools


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    """The CSRF token of the first form of an HTML page."""
    found = _CSRF.search(page)
    assert found, page[:2000]
    return found.group(1)


def login(client: httpx.Client, user: str, password: str | None = None) -> httpx.Response:
    """Log ``client`` in through the login form (the response to the POST)."""
    form = client.get("/ui/login")
    assert form.status_code == 200, form.text
    return client.post("/ui/login", data={
        "csrf": csrf_of(form.text), "username": user,
        "password": USERS[user] if password is None else password, "next": "/ui/"})


@pytest.fixture
def http(ui_registry: UIRegistry) -> Iterator[httpx.Client]:
    """An HTTPS client of the UI registry with its own cookies (anonymous at first)."""
    with ui_registry.client() as c:
        yield c


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """A headless chromium for the session."""
    found = Browser(tmp_path_factory.mktemp("chromium") / "chromedriver.log")
    try:
        yield found
    finally:
        found.quit()
