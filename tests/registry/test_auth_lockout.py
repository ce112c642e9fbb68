"""The login lockout through the real token endpoint, from several loopback addresses:
failures count per (user, address) and per user, so one address's failures never lock out
other users behind it, nor the same user elsewhere, and a 429 says when to retry."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import httpx

from tests.registry.server import error_codes
from tests.registry.test_auth_server import SERVICE, AuthServer, start_auth_server

USERS = {"alice": "alice-pw", "bob": "bob-pw"}
CONFIG = "login_max_failures = 10\nlogin_user_max_failures = 15\n"
SCOPE = "repository:team/app:pull"


def login(srv: AuthServer, address: str, user: str, password: str, *,
          post: bool = False) -> httpx.Response:
    """Ask the token endpoint for a token from ``address`` (GET with basic credentials,
    or the OAuth2 password grant)."""
    with srv.client(local_address=address) as c:
        if post:
            return c.post("/token", data={"grant_type": "password", "username": user,
                                          "password": password, "service": SERVICE,
                                          "scope": SCOPE})
        return c.get("/token", params={"service": SERVICE, "scope": SCOPE},
                     auth=(user, password))


def fail(srv: AuthServer, address: str, user: str, times: int) -> None:
    """``times`` wrong passwords, each refused 401."""
    for i in range(times):
        r = login(srv, address, user, f"wrong-{i}")
        assert r.status_code == 401, (i, r.text)


def assert_locked(r: httpx.Response, user: str) -> None:
    """A 429 that says whom it locks out and when to retry."""
    assert r.status_code == 429 and error_codes(r) == ["TOOMANYREQUESTS"], r.text
    wait = int(r.headers["Retry-After"])
    assert 0 < wait <= 60
    error = r.json()["errors"][0]
    assert repr(user) in error["message"] and "retry after" in error["message"]
    assert error["detail"]["user"] == user and error["detail"]["retry_after"] == wait
    retry_at = datetime.datetime.strptime(error["detail"]["retry_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert error["detail"]["retry_at"] in error["message"]
    assert abs(retry_at.replace(tzinfo=datetime.UTC).timestamp() - time.time() - wait) < 30


def test_one_address_locks_out_only_that_user_there(tmp_path: Path) -> None:
    srv = start_auth_server(tmp_path, config=CONFIG, users=USERS)
    try:
        nat = "127.0.0.2"
        fail(srv, nat, "alice", 10)
        assert_locked(login(srv, nat, "alice", "wrong-again"), "alice")
        assert_locked(login(srv, nat, "alice", USERS["alice"]), "alice")
        assert_locked(login(srv, nat, "alice", USERS["alice"], post=True), "alice")
        assert "127.0.0.2" in login(srv, nat, "alice", "x").json()["errors"][0]["message"]
        # Bob behind the same address is not locked out, nor counted with alice.
        r = login(srv, nat, "bob", USERS["bob"])
        assert r.status_code == 200, r.text
        assert login(srv, nat, "bob", "wrong").status_code == 401
        assert login(srv, nat, "bob", USERS["bob"], post=True).status_code == 200
        # Alice's correct password from another address works.
        r = login(srv, "127.0.0.3", "alice", USERS["alice"])
        assert r.status_code == 200, r.text
        assert login(srv, "127.0.0.3", "alice", USERS["alice"], post=True).status_code == 200
    finally:
        srv.stop()


def test_failures_spread_over_addresses_lock_the_user_everywhere(tmp_path: Path) -> None:
    srv = start_auth_server(tmp_path, config=CONFIG, users=USERS)
    try:
        for address, times in (("127.0.0.4", 5), ("127.0.0.5", 5), ("127.0.0.6", 4)):
            fail(srv, address, "alice", times)
        assert login(srv, "127.0.0.7", "alice", USERS["alice"]).status_code == 200
        fail(srv, "127.0.0.8", "alice", 1)
        for address in ("127.0.0.9", "127.0.0.4"):
            r = login(srv, address, "alice", USERS["alice"])
            assert_locked(r, "alice")
            assert "from any address" in r.json()["errors"][0]["message"]
        assert login(srv, "127.0.0.9", "bob", USERS["bob"]).status_code == 200
    finally:
        srv.stop()


def test_a_success_clears_the_count_of_its_address(tmp_path: Path) -> None:
    srv = start_auth_server(tmp_path, config=CONFIG, users=USERS)
    try:
        address = "127.0.0.10"
        fail(srv, address, "bob", 9)
        assert login(srv, address, "bob", USERS["bob"]).status_code == 200
        fail(srv, address, "bob", 5)
        assert login(srv, address, "bob", USERS["bob"]).status_code == 200
    finally:
        srv.stop()


def test_the_lockout_ends_when_it_says(tmp_path: Path) -> None:
    srv = start_auth_server(tmp_path, config=CONFIG + "login_lockout = 5\n", users=USERS)
    try:
        address = "127.0.0.11"
        fail(srv, address, "alice", 10)
        r = login(srv, address, "alice", USERS["alice"])
        assert r.status_code == 429
        time.sleep(int(r.headers["Retry-After"]) + 0.5)
        r = login(srv, address, "alice", USERS["alice"])
        assert r.status_code == 200, r.text
    finally:
        srv.stop()
