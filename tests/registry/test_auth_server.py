"""Token authentication over TLS against a real ``registry serve --tls``: the challenge, the
token endpoint (GET and the OAuth2 POST), the access rules, hostile tokens, the catalog,
throttled logins, a token renewed in the middle of a chunked push, and basic auth."""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import httpx
import jwt
import pytest

from registry.auth.tokens import SigningKey
from registry.auth.users import UserStore
from registry.testing.processes import RegistryProcess, ours
from tests.registry.server import Api, error_codes, sha256
from tests.registry.test_auth_units import hostile_tokens

SERVICE = "pybuild-registry"
ISSUER = "pybuild-registry"
PASSWORDS = {"alice": "alice-pw", "reader": "reader-pw", "carol": "carol-pw",
             "root": "root-pw", "dave": "dave-pw"}
CONFIG = """
admins = ["root"]

[groups]
team-a = ["alice"]

[[access]]
repository = "team-a/*"
groups = ["team-a"]
actions = ["pull", "push", "delete"]

[[access]]
repository = "team-a/*"
users = ["reader"]
actions = ["pull"]

[[access]]
repository = "team-b/*"
users = ["carol"]
actions = ["pull", "push"]

[[access]]
repository = "public/**"
anonymous = true
actions = ["pull"]

[[access]]
repository = "public/**"
users = ["alice"]
actions = ["push"]
"""


@dataclass
class AuthServer:
    """A TLS registry with users and rules, and ways to talk to it."""

    proc: RegistryProcess
    root: Path

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT``."""
        return self.proc.url

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return self.proc.address

    @property
    def ca(self) -> Path:
        """The private CA's certificate."""
        return self.root / "tls" / "ca.crt"

    @property
    def cert_dir(self) -> Path:
        """A directory holding only the CA certificate (for ``--cert-dir``)."""
        return self.root / "tls" / "trust"

    def ssl(self) -> ssl.SSLContext:
        """A client context that trusts the private CA only."""
        return ssl.create_default_context(cafile=str(self.ca))

    def client(self, *, local_address: str | None = None, **kwargs: object) -> httpx.Client:
        """An HTTPS client that verifies the server against the private CA."""
        transport = httpx.HTTPTransport(verify=self.ssl(), local_address=local_address)
        return httpx.Client(base_url=self.url, transport=transport, timeout=60,
                            **kwargs)  # type: ignore[arg-type]

    def token(self, user: str | None, *scopes: str, password: str | None = None) -> str:
        """A token from ``GET /token`` (anonymous for ``user=None``)."""
        auth = None if user is None else (user, password or PASSWORDS[user])
        with self.client() as c:
            r = c.get("/token", params={"service": SERVICE, "scope": list(scopes)}, auth=auth)
        assert r.status_code == 200, r.text
        return str(r.json()["token"])

    def as_token(self, token: str) -> httpx.Client:
        """A client sending ``token``."""
        return self.client(headers={"Authorization": f"Bearer {token}"})

    def signing_key(self) -> SigningKey:
        """The server's token key, read from its data directory."""
        return SigningKey.load_or_create(self.root / "auth")

    def stop(self) -> None:
        """Stop the server."""
        self.proc.stop()


def start_auth_server(tmp: Path, *, config: str = CONFIG, args: Sequence[str] = (),
                      users: Mapping[str, str] = PASSWORDS, tls: bool = True) -> AuthServer:
    """Start ``registry serve`` with ``config`` and ``users`` (dave in group team-a)."""
    root = tmp / "root"
    store = UserStore(root / "auth")
    for name, password in users.items():
        store.add(name, password, ["team-a"] if name == "dave" else [])
    config_file = tmp / "config.toml"
    config_file.write_text(config)
    proc = ours(root, tls=tls, extra=["--config", str(config_file), *args]).start()
    return AuthServer(proc, root)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """A TLS registry with token auth, :data:`CONFIG` and :data:`PASSWORDS`."""
    srv = start_auth_server(tmp_path_factory.mktemp("auth"))
    yield srv
    srv.stop()


def challenge(response: httpx.Response) -> dict[str, str]:
    """The parameters of a ``WWW-Authenticate: Bearer`` header."""
    header = response.headers["WWW-Authenticate"]
    assert header.startswith("Bearer "), header
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def push_image(server: AuthServer, repo: str, tag: str = "1", user: str = "root") -> None:
    """Push a small image with a token of ``user``."""
    token = server.token(user, f"repository:{repo}:pull,push")
    with server.as_token(token) as c:
        Api(c).image(repo, tag)


def test_unauthenticated_requests_are_challenged(server: AuthServer) -> None:
    realm = f"https://{server.address}/token"
    with server.client() as c:
        r = c.get("/v2/")
        assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"]
        assert r.headers["WWW-Authenticate"] == f'Bearer realm="{realm}",service="{SERVICE}"'
        r = c.get("/v2/team-a/app/manifests/1")
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == (
            f'Bearer realm="{realm}",service="{SERVICE}",scope="repository:team-a/app:pull"')
        assert r.json()["errors"][0]["detail"] == [
            {"Type": "repository", "Name": "team-a/app", "Action": "pull"}]
        r = c.post("/v2/team-a/app/blobs/uploads/")
        assert challenge(r)["scope"] == "repository:team-a/app:pull,push"
        assert challenge(c.delete(f"/v2/team-a/app/manifests/{sha256(b'x')}"))["scope"] == \
            "repository:team-a/app:delete"
        assert challenge(c.get("/v2/_catalog"))["scope"] == "registry:catalog:*"
        r = c.get("/v2/", headers={"Authorization": "Basic YWxpY2U6YWxpY2UtcHc="})
        assert r.status_code == 401


def test_get_token_and_use_it(server: AuthServer) -> None:
    with server.client() as c:
        r = c.get("/token", params={"service": SERVICE,
                                    "scope": ["repository:team-a/app:pull,push"]},
                  auth=("alice", PASSWORDS["alice"]))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["token"] == doc["access_token"]
    assert doc["expires_in"] == 300 and "refresh_token" not in doc
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["issued_at"])
    assert jwt.get_unverified_header(doc["token"])["alg"] == "ES256"
    claims = jwt.decode(doc["token"], options={"verify_signature": False})
    assert claims["iss"] == ISSUER and claims["aud"] == SERVICE and claims["sub"] == "alice"
    assert claims["access"] == [{"type": "repository", "name": "team-a/app",
                                 "actions": ["pull", "push"]}]
    assert {"exp", "nbf", "iat", "jti"} <= set(claims)
    with server.as_token(doc["token"]) as c:
        assert c.get("/v2/").status_code == 200
        Api(c).image("team-a/app", "1")
        assert c.get("/v2/team-a/app/manifests/1").status_code == 200
    with server.client() as c:
        r = c.get("/token", params={"scope": "repository:team-a/app:pull"},
                  auth=("alice", "wrong"))
        assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"]
        r = c.get("/token", params={"scope": "repository:team-a/app:pull"},
                  auth=("nobody", "wrong"))
        assert r.status_code == 401
        r = c.get("/token", params={"service": "elsewhere"}, auth=("alice", "alice-pw"))
        assert r.status_code == 400
        r = c.get("/token", params={"scope": "repository:Bad_Name:pull"})
        assert r.status_code == 400 and error_codes(r) == ["NAME_INVALID"]


def oauth(server: AuthServer, **form: str) -> httpx.Response:
    """``POST /token`` with an OAuth2 form."""
    with server.client() as c:
        return c.post("/token", data={"service": SERVICE, "client_id": "tests", **form})


def test_oauth_password_and_refresh_grants(server: AuthServer) -> None:
    scope = "repository:team-a/oauth:pull,push"
    r = oauth(server, grant_type="password", username="dave", password=PASSWORDS["dave"],
              scope=scope, access_type="offline")
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["access_token"] and first["refresh_token"] and first["scope"] == scope
    assert "refresh_token" not in oauth(server, grant_type="password", username="dave",
                                        password=PASSWORDS["dave"], scope=scope).json()
    r = oauth(server, grant_type="refresh_token", refresh_token=first["refresh_token"],
              scope="repository:team-a/oauth:pull repository:team-b/x:pull")
    assert r.status_code == 200, r.text
    renewed = r.json()
    claims = jwt.decode(renewed["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "dave"
    assert claims["access"] == [{"type": "repository", "name": "team-a/oauth",
                                 "actions": ["pull"]}]
    with server.as_token(renewed["access_token"]) as c:
        assert c.get("/v2/team-a/oauth/tags/list").status_code == 404
    refused = {
        "tampered": first["refresh_token"][:-4] + "AAAA",
        "an access token": first["access_token"],
        "empty": "",
    }
    for what, token in refused.items():
        r = oauth(server, grant_type="refresh_token", refresh_token=token, scope=scope)
        assert r.status_code == 401, what
    with server.as_token(first["refresh_token"]) as c:
        assert c.get("/v2/").status_code == 401
    r = oauth(server, grant_type="password", username="dave", password="wrong")
    assert r.status_code == 401
    assert oauth(server, grant_type="client_credentials").status_code == 400


def test_changing_the_password_revokes_refresh_tokens(tmp_path: Path) -> None:
    srv = start_auth_server(tmp_path, users={"alice": "old-pw"})
    try:
        r = oauth(srv, grant_type="password", username="alice", password="old-pw",
                  access_type="offline")
        refresh = r.json()["refresh_token"]
        assert oauth(srv, grant_type="refresh_token", refresh_token=refresh).status_code == 200
        UserStore(srv.root / "auth").add("alice", "new-pw", replace=True)
        assert oauth(srv, grant_type="refresh_token", refresh_token=refresh).status_code == 401
        UserStore(srv.root / "auth").remove("alice")
        r = oauth(srv, grant_type="password", username="alice", password="new-pw")
        assert r.status_code == 401
    finally:
        srv.stop()


def test_granted_actions_are_the_intersection(server: AuthServer) -> None:
    token = server.token("alice", "repository:team-a/app:pull,push,delete",
                         "repository:team-b/app:pull", "repository:public/lib:push,delete",
                         "registry:catalog:*")
    assert jwt.decode(token, options={"verify_signature": False})["access"] == [
        {"type": "repository", "name": "team-a/app", "actions": ["pull", "push", "delete"]},
        {"type": "repository", "name": "public/lib", "actions": ["push"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]


def test_a_pull_only_user_is_denied_push(server: AuthServer) -> None:
    push_image(server, "team-a/readable")
    token = server.token("reader", "repository:team-a/readable:pull,push")
    with server.as_token(token) as c:
        assert c.get("/v2/team-a/readable/manifests/1").status_code == 200
        r = c.post("/v2/team-a/readable/blobs/uploads/")
        assert r.status_code == 403 and error_codes(r) == ["DENIED"]
        r = c.put("/v2/team-a/readable/manifests/2", content=b"{}",
                  headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 403 and error_codes(r) == ["DENIED"]


def test_team_a_cannot_push_or_pull_team_b(server: AuthServer) -> None:
    push_image(server, "team-b/x")
    token = server.token("alice", "repository:team-b/x:pull,push")
    assert jwt.decode(token, options={"verify_signature": False})["access"] == []
    with server.as_token(token) as c:
        for r in (c.get("/v2/team-b/x/manifests/1"), c.post("/v2/team-b/x/blobs/uploads/")):
            assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    with server.as_token(server.token("carol", "repository:team-b/x:pull,push")) as c:
        assert c.get("/v2/team-b/x/manifests/1").status_code == 200


def test_anonymous_pull_only_where_allowed(server: AuthServer) -> None:
    push_image(server, "public/lib/base", user="alice")
    push_image(server, "team-a/private")
    with server.as_token(server.token(None, "repository:public/lib/base:pull,push")) as c:
        assert c.get("/v2/public/lib/base/manifests/1").status_code == 200
        r = c.post("/v2/public/lib/base/blobs/uploads/")
        assert r.status_code == 401 and error_codes(r) == ["DENIED"]
        assert challenge(r)["error"] == "insufficient_scope"
    with server.as_token(server.token(None, "repository:team-a/private:pull")) as c:
        r = c.get("/v2/team-a/private/manifests/1")
        assert r.status_code == 401 and error_codes(r) == ["DENIED"]


def test_a_token_for_one_repository_is_refused_for_another(server: AuthServer) -> None:
    push_image(server, "team-a/one")
    push_image(server, "team-a/two")
    with server.as_token(server.token("alice", "repository:team-a/one:pull,push")) as c:
        assert c.get("/v2/team-a/one/manifests/1").status_code == 200
        r = c.get("/v2/team-a/two/manifests/1")
        assert r.status_code == 401 and error_codes(r) == ["DENIED"]
        assert challenge(r) == {"realm": f"https://{server.address}/token", "service": SERVICE,
                                "scope": "repository:team-a/two:pull",
                                "error": "insufficient_scope"}


def test_hostile_tokens_are_refused_by_the_server(server: AuthServer) -> None:
    push_image(server, "team-a/target")
    genuine = server.token("alice", "repository:team-a/target:pull")
    key = server.signing_key()
    now = int(time.time())
    forged_but_right = jwt.encode(
        {"iss": ISSUER, "sub": "alice", "aud": SERVICE, "iat": now, "nbf": now,
         "exp": now + 60, "jti": "t",
         "access": [{"type": "repository", "name": "team-a/target", "actions": ["pull"]}]},
        key.private, algorithm="ES256", headers={"kid": key.kid})
    with server.as_token(forged_but_right) as c:
        assert c.get("/v2/team-a/target/manifests/1").status_code == 200
    tokens = hostile_tokens(key, issuer=ISSUER, service=SERVICE, name="team-a/target",
                            genuine=genuine)
    for what, token in tokens.items():
        with server.as_token(token) as c:
            r = c.get("/v2/team-a/target/manifests/1")
            assert r.status_code == 401, (what, r.text)
            assert error_codes(r) == ["UNAUTHORIZED"], what
            assert challenge(r)["error"] == "invalid_token", what


def test_catalog_lists_only_what_the_caller_may_pull(server: AuthServer) -> None:
    for repo in ("team-a/cat1", "team-a/cat2", "team-b/cat", "public/cat", "other/cat"):
        push_image(server, repo)

    def listing(user: str | None, n: int | None = None) -> list[str]:
        names: list[str] = []
        with server.as_token(server.token(user, "registry:catalog:*")) as c:
            url: str | None = "/v2/_catalog" + (f"?n={n}" if n else "")
            for _ in range(100):
                if url is None:
                    break
                r = c.get(url)
                assert r.status_code == 200, r.text
                names += r.json()["repositories"]
                link = r.headers.get("Link")
                url = link[1:link.index(">")] if link else None
        return [name for name in names if name.endswith("cat") or "/cat" in name]

    assert listing("alice") == ["public/cat", "team-a/cat1", "team-a/cat2"]
    assert listing("alice", n=1) == ["public/cat", "team-a/cat1", "team-a/cat2"]
    assert listing("carol") == ["public/cat", "team-b/cat"]
    assert listing(None) == ["public/cat"]
    assert listing("root") == ["other/cat", "public/cat", "team-a/cat1", "team-a/cat2",
                               "team-b/cat"]


def test_mount_needs_pull_on_the_source(server: AuthServer) -> None:
    with server.as_token(server.token("root", "repository:team-a/src:pull,push")) as c:
        digest = Api(c).blob("team-a/src", b"team-a secret layer")
    token = server.token("carol", "repository:team-b/dst:pull,push",
                         "repository:team-a/src:pull")
    with server.as_token(token) as c:
        r = c.post("/v2/team-b/dst/blobs/uploads/",
                   params={"mount": digest, "from": "team-a/src"})
        assert r.status_code == 202, r.text
    token = server.token("alice", "repository:team-a/dst:pull,push",
                         "repository:team-a/src:pull")
    with server.as_token(token) as c:
        r = c.post("/v2/team-a/dst/blobs/uploads/",
                   params={"mount": digest, "from": "team-a/src"})
        assert r.status_code == 201, r.text


def test_delete_needs_the_delete_action(server: AuthServer) -> None:
    push_image(server, "team-a/gone")
    push_image(server, "team-b/kept")
    with server.as_token(server.token("alice", "repository:team-a/gone:pull")) as c:
        digest = c.head("/v2/team-a/gone/manifests/1",
                        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
                        ).headers["Docker-Content-Digest"]
    with server.as_token(server.token("alice", "repository:team-a/gone:delete")) as c:
        assert c.delete(f"/v2/team-a/gone/manifests/{digest}").status_code == 202
    with server.as_token(server.token("carol", "repository:team-b/kept:delete")) as c:
        r = c.delete(f"/v2/team-b/kept/manifests/{digest}")
        assert r.status_code == 403 and error_codes(r) == ["DENIED"]


def test_failed_logins_are_throttled_per_client(tmp_path: Path) -> None:
    srv = start_auth_server(tmp_path, users={"alice": PASSWORDS["alice"]})
    try:
        statuses = []
        with srv.client(local_address="127.0.0.2") as attacker:
            for i in range(20):
                r = attacker.get("/token", params={"scope": "repository:team-a/app:pull"},
                                 auth=("alice", f"guess-{i}"))
                statuses.append(r.status_code)
            assert statuses[0] == 401 and statuses[-1] == 429, statuses
            assert error_codes(r) == ["TOOMANYREQUESTS"]
            assert int(r.headers["Retry-After"]) > 0
            r = attacker.get("/token", auth=("alice", PASSWORDS["alice"]))
            assert r.status_code == 429
            r = attacker.post("/token", data={"grant_type": "password", "username": "alice",
                                              "password": PASSWORDS["alice"]})
            assert r.status_code == 429
        with srv.client(local_address="127.0.0.1") as friend:
            r = friend.get("/token", params={"scope": "repository:team-a/app:pull"},
                           auth=("alice", PASSWORDS["alice"]))
            assert r.status_code == 200, r.text
    finally:
        srv.stop()


def test_an_expiring_token_is_renewed_during_a_chunked_push(tmp_path: Path) -> None:
    srv = start_auth_server(tmp_path, config="token_ttl = 2\n" + CONFIG)
    repo, scope = "team-a/big", "repository:team-a/big:pull,push"
    chunks = [os.urandom(256 * 1024) for _ in range(4)]
    blob = b"".join(chunks)
    try:
        with srv.client() as c:
            r = c.post("/token", data={"grant_type": "password", "username": "alice",
                                       "password": PASSWORDS["alice"], "service": SERVICE,
                                       "scope": scope, "access_type": "offline",
                                       "client_id": "tests"})
            assert r.status_code == 200, r.text
            tokens = {"access": r.json()["access_token"], "refresh": r.json()["refresh_token"]}
            assert r.json()["expires_in"] == 2
            renewals = 0

            def send(method: str, url: str, **kwargs: object) -> httpx.Response:
                nonlocal renewals
                for _ in range(4):
                    headers = {"Authorization": f"Bearer {tokens['access']}",
                               **kwargs.get("headers", {})}  # type: ignore[dict-item]
                    try:
                        r = c.request(method, url, **{**kwargs, "headers": headers})  # type: ignore[arg-type]
                    except httpx.TransportError:
                        continue
                    if r.status_code != 401:
                        return r
                    asked = challenge(r)
                    assert asked["error"] == "invalid_token", r.text
                    renewed = c.post("/token", data={
                        "grant_type": "refresh_token", "refresh_token": tokens["refresh"],
                        "service": asked["service"], "scope": asked["scope"],
                        "client_id": "tests"})
                    assert renewed.status_code == 200, renewed.text
                    tokens["access"] = renewed.json()["access_token"]
                    renewals += 1
                pytest.fail(f"{method} {url} still refused after renewing the token")

            r = send("POST", f"/v2/{repo}/blobs/uploads/")
            assert r.status_code == 202, r.text
            location, offset = r.headers["Location"], 0
            for i, chunk in enumerate(chunks):
                r = send("PATCH", location, content=chunk, headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
                assert r.status_code == 202, r.text
                location, offset = r.headers["Location"], offset + len(chunk)
                if i == 1:
                    expires = jwt.decode(tokens["access"],
                                         options={"verify_signature": False})["exp"]
                    time.sleep(min(10.0, max(0.0, expires + 2 - time.time())))
            r = send("PUT", location, params={"digest": sha256(blob)})
            assert r.status_code == 201, r.text
            assert renewals >= 1
            r = send("GET", f"/v2/{repo}/blobs/{sha256(blob)}")
            assert r.status_code == 200 and r.content == blob
    finally:
        srv.stop()


def basic(user: str, password: str) -> dict[str, str]:
    """An ``Authorization: Basic`` header."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_checks_every_request_against_the_rules(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(b"hank-pw", bcrypt.gensalt(5)).decode()
    htpasswd.write_text(f"hank:$2y${hashed[4:]}\n")
    config = f'htpasswd = "{htpasswd}"\n' + CONFIG
    srv = start_auth_server(tmp_path, config=config.replace('users = ["carol"]',
                                                            'users = ["carol", "hank"]'),
                            args=["--auth", "basic"])
    try:
        with srv.client() as c:
            r = c.get("/v2/")
            assert r.status_code == 401
            assert r.headers["WWW-Authenticate"] == f'Basic realm="{SERVICE}"'
            assert c.get("/v2/", headers=basic("alice", "wrong")).status_code == 401
            assert c.get("/v2/", headers=basic("alice", PASSWORDS["alice"])).status_code == 200
            assert c.get("/token").status_code == 404
        with srv.client(headers=basic("hank", "hank-pw")) as hank:
            Api(hank).image("team-b/basic", "1")
        with srv.client(headers=basic("alice", PASSWORDS["alice"])) as alice:
            Api(alice).image("public/basic", "1")
        with srv.client() as c:
            r = c.post("/v2/team-b/basic/blobs/uploads/",
                       headers=basic("alice", PASSWORDS["alice"]))
            assert r.status_code == 403 and error_codes(r) == ["DENIED"]
            r = c.get("/v2/team-b/basic/manifests/1", headers=basic("reader", "reader-pw"))
            assert r.status_code == 403
            assert c.get("/v2/public/basic/manifests/1").status_code == 200
            r = c.get("/v2/team-b/basic/manifests/1")
            assert r.status_code == 401 and "Basic" in r.headers["WWW-Authenticate"]
            r = c.get("/v2/_catalog", headers=basic("hank", "hank-pw"))
            assert r.json()["repositories"] == ["public/basic", "team-b/basic"]
            assert c.get("/v2/_catalog").json()["repositories"] == ["public/basic"]
            r = c.get("/v2/", headers={"Authorization": "Basic !!!"})
            assert r.status_code == 401
    finally:
        srv.stop()


def test_user_command(tmp_path: Path) -> None:
    root = tmp_path / "root"

    def registry(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "registry.cli", "user", *args,
                               "--root", str(root)], input=stdin, capture_output=True,
                              text=True, timeout=120)

    assert registry("add", "alice", "--password-stdin", "--group", "team-a",
                    stdin="pw one\n").returncode == 0
    assert registry("add", "bob", "--password-stdin", stdin="pw2\n").returncode == 0
    again = registry("add", "bob", "--password-stdin", stdin="pw3\n")
    assert again.returncode == 2 and "exists" in again.stderr
    no_tty = registry("add", "carl")
    assert no_tty.returncode == 2 and "--password-stdin" in no_tty.stderr
    assert registry("list").stdout.splitlines() == ["alice\tteam-a\tusers", "bob\t-\tusers"]
    store = UserStore(root / "auth")
    assert store.authenticate("alice", "pw one") is not None
    assert json.loads((root / "auth" / "users.json").read_text())["users"]["alice"][
        "password"].startswith("scrypt$14$8$1$")
    assert registry("del", "bob").returncode == 0
    assert registry("del", "bob").returncode == 1
    assert registry("list").stdout.splitlines() == ["alice\tteam-a\tusers"]
    bad = registry("add", "no:colon", "--password-stdin", stdin="x\n")
    assert bad.returncode == 2 and "not valid" in bad.stderr
