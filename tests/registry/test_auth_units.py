"""The pieces of authentication on their own: access rules and their config, tokens, the
users file, password hashes and the login throttle."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import multiprocessing
import os
import sqlite3
import stat
import time
from pathlib import Path

import bcrypt
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from layerstore.sqlitedb import schema_version
from registry.auth.rules import AccessPolicy, RuleError, compile_pattern, parse_rules
from registry.auth.throttle import THROTTLE_FILE, LoginThrottle
from registry.auth.tokens import (
    Access,
    SigningKey,
    TokenError,
    TokenIssuer,
    TokenVerifier,
    key_id,
)
from registry.auth.users import UserError, UserStore, hash_password, verify_password
from registry.config import ConfigError, Settings, load_settings
from registry.errors import RegistryError

pytestmark = pytest.mark.unit

# Rules.


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("team-a/*", "team-a/app", True),
    ("team-a/*", "team-a/app/sub", False),
    ("team-a/*", "team-a", False),
    ("team-a/*", "team-ab/app", False),
    ("public/**", "public/a", True),
    ("public/**", "public/a/b/c", True),
    ("public/**", "public", False),
    ("public/**", "publicity/a", False),
    ("**", "anything/at/all", True),
    ("lib/app-*", "lib/app-1", True),
    ("lib/app-*", "lib/app-1/x", False),
    ("exact/name", "exact/name", True),
    ("exact/name", "exact/namex", False),
    ("a.b/*", "aXb/c", False),
])
def test_repository_patterns(pattern: str, name: str, expected: bool) -> None:
    assert (compile_pattern(pattern).fullmatch(name) is not None) is expected


RULES = [
    {"repository": "team-a/*", "groups": ["team-a"], "actions": ["pull", "push"]},
    {"repository": "team-a/*", "users": ["reader"], "actions": ["pull"]},
    {"repository": "public/**", "anonymous": True, "actions": ["pull"]},
    {"repository": "shared/*", "users": ["*"], "actions": ["*"]},
]


def test_policy_unions_rules_and_knows_groups_admins_and_anonymous() -> None:
    policy = AccessPolicy(parse_rules(RULES), admins=["root", "@ops"],
                          groups=[("team-a", ("alice",))])
    alice = policy.principal("alice")
    dave = policy.principal("dave", ["team-a"])
    reader = policy.principal("reader")
    anonymous = policy.principal(None)
    ops = policy.principal("olga", ["ops"])
    assert policy.allowed(alice, "repository", "team-a/app") == {"pull", "push"}
    assert policy.allowed(dave, "repository", "team-a/app") == {"pull", "push"}
    assert policy.allowed(reader, "repository", "team-a/app") == {"pull"}
    assert policy.allowed(alice, "repository", "team-b/app") == set()
    assert policy.allowed(anonymous, "repository", "public/x/y") == {"pull"}
    assert policy.allowed(anonymous, "repository", "team-a/app") == set()
    assert policy.allowed(anonymous, "repository", "shared/x") == set()
    assert policy.allowed(reader, "repository", "shared/x") == {"pull", "push", "delete"}
    for admin in (policy.principal("root"), ops):
        assert policy.allowed(admin, "repository", "any/where") == {"pull", "push", "delete"}
    assert policy.allowed(anonymous, "registry", "catalog") == {"*"}
    assert policy.allowed(alice, "unknown", "x") == set()


def test_granted_actions_are_asked_and_allowed() -> None:
    policy = AccessPolicy(parse_rules(RULES))
    reader = policy.principal("reader")
    assert policy.grant(reader, "repository", "team-a/app", ["push", "pull"]) == ("pull",)
    assert policy.grant(reader, "repository", "team-a/app", ["push"]) == ()
    assert policy.grant(reader, "repository", "team-a/app", ["*"]) == ("pull",)
    assert policy.grant(reader, "repository", "shared/a", ["*"]) == ("pull", "push", "delete")
    assert policy.grant(reader, "registry", "catalog", ["*"]) == ("*",)
    assert policy.grant(reader, "repository", "shared/a", ["pull", "frobnicate"]) == ("pull",)


@pytest.mark.parametrize(("rules", "message"), [
    ([{"repository": "team/*", "actions": ["pull"]}], "grants to nobody"),
    ([{"repository": "team/*", "users": ["a"], "actions": ["fly"]}], "actions"),
    ([{"repository": "Team/*", "users": ["a"], "actions": ["pull"]}], "repository"),
    ([{"repository": "t/*", "users": ["a"], "actions": ["pull"], "colour": 1}], "unknown key"),
    ([{"repository": "t/*", "users": ["a b"], "actions": ["pull"]}], "not a valid name"),
    ([{"repository": "t/*", "anonymous": "yes", "actions": ["pull"]}], "anonymous"),
    ({"repository": "t/*"}, "list of tables"),
])
def test_bad_rules_are_config_errors(tmp_path: Path, rules: object, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        parse_rules(rules)
    config = tmp_path / "config.toml"
    config.write_text(json_to_toml_access(rules))
    with pytest.raises(ConfigError, match=message):
        load_settings(config, environ={})


def json_to_toml_access(rules: object) -> str:
    """``access = <rules>`` as TOML (inline tables)."""
    def value(v: object) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)
    return f"access = {value(rules)}\n"


def test_auth_settings_from_file_environment_and_round_trip(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        'auth = "token"\ntoken_ttl = 60\ntls_san = ["registry.example", "10.1.2.3"]\n'
        'admins = ["root", "@ops"]\n[groups]\nteam-a = ["alice"]\n'
        '[[access]]\nrepository = "team-a/*"\ngroups = ["team-a"]\nactions = ["pull"]\n')
    settings = load_settings(config, environ={"REGISTRY_LOGIN_MAX_FAILURES": "3"})
    assert settings.auth_mode == "token" and settings.token_ttl == 60
    assert settings.tls_san == ("registry.example", "10.1.2.3")
    assert settings.groups == (("team-a", ("alice",)),)
    assert settings.access[0].repository == "team-a/*"
    assert settings.login_max_failures == 3
    assert Settings.from_json(settings.to_json()) == settings
    env = {"REGISTRY_ACCESS": json.dumps(RULES), "REGISTRY_TLS_SAN": "a.example,b.example"}
    from_env = load_settings(None, environ=env)
    assert len(from_env.access) == len(RULES)
    assert from_env.tls_san == ("a.example", "b.example")


def test_auth_mode_defaults_and_checks() -> None:
    assert Settings().auth_mode == "none"
    assert Settings(tls=True).auth_mode == "token"
    assert Settings(tls=True, auth="basic").auth_mode == "basic"
    assert Settings(tls_cert=Path("c"), tls_key=Path("k")).auth_mode == "token"
    for bad in ({"auth": "kerberos"}, {"tls_cert": Path("c")}, {"token_ttl": 0},
                {"token_realm": "ftp://x"}):
        with pytest.raises(ConfigError):
            Settings(**bad)  # type: ignore[arg-type]


# Tokens.


def _verifier(key: SigningKey, **kw: object) -> TokenVerifier:
    options = {"issuer": "iss", "service": "svc", **kw}
    return TokenVerifier(key.public, key.kid, **options)  # type: ignore[arg-type]


def test_issue_and_verify_a_token() -> None:
    key = SigningKey.generate()
    issuer = TokenIssuer(key, issuer="iss", service="svc", ttl=300, refresh_ttl=3600)
    issued = issuer.access_token("alice", [Access("repository", "team-a/app", ("pull",))])
    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": "ES256", "kid": key.kid, "typ": "JWT"}
    payload = jwt.decode(issued.token, options={"verify_signature": False})
    assert set(payload) == {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"}
    assert payload["exp"] - payload["iat"] == 300
    claims = _verifier(key).verify(issued.token)
    assert claims == issued.claims
    assert claims.allows("repository", "team-a/app", ["pull"])
    assert not claims.allows("repository", "team-a/app", ["pull", "push"])
    assert not claims.allows("repository", "team-b/app", ["pull"])
    assert len(key.kid) == 59 and key.kid.count(":") == 11


def test_key_is_made_once_and_kept(tmp_path: Path) -> None:
    first = SigningKey.load_or_create(tmp_path / "auth")
    again = SigningKey.load_or_create(tmp_path / "auth")
    assert first.kid == again.kid == key_id(again.public)
    path = tmp_path / "auth" / "token-signing-key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path / "auth") == ["token-signing-key.pem"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hostile_tokens(key: SigningKey, *, issuer: str, service: str, name: str,
                   genuine: str) -> dict[str, str]:
    """Tokens that must all be refused, keyed by what is wrong with them; ``genuine`` is a
    real token for ``name`` with pull."""
    now = int(time.time())
    base = {"iss": issuer, "sub": "alice", "aud": service, "iat": now, "nbf": now,
            "exp": now + 300, "jti": "x",
            "access": [{"type": "repository", "name": name, "actions": ["pull", "push"]}]}

    def es256(payload: dict[str, object], signer: SigningKey = key, kid: str = key.kid) -> str:
        return jwt.encode(payload, signer.private, algorithm="ES256", headers={"kid": kid})

    def raw(header: dict[str, object], payload: dict[str, object], secret: bytes | None) -> str:
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
        if secret is None:
            return signing_input + "."
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(mac)}"

    public_pem = key.public.public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    head, _, signature = genuine.split(".")
    widened = dict(jwt.decode(genuine, options={"verify_signature": False}))
    widened["access"] = [{"type": "repository", "name": name, "actions": ["pull", "push",
                                                                          "delete"]},
                         {"type": "repository", "name": "team-b/app", "actions": ["pull"]}]
    return {
        "bad signature": es256(base, SigningKey.generate()),
        "unknown key id": es256(base, kid="AAAA:" + key.kid[5:]),
        "alg none": raw({"alg": "none", "kid": key.kid, "typ": "JWT"}, base, None),
        "HS256 keyed with the public key": raw({"alg": "HS256", "kid": key.kid, "typ": "JWT"},
                                               base, public_pem),
        "expired": es256({**base, "iat": now - 900, "nbf": now - 900, "exp": now - 600}),
        "not yet valid": es256({**base, "nbf": now + 3600, "exp": now + 7200}),
        "wrong audience": es256({**base, "aud": "another-registry"}),
        "wrong issuer": es256({**base, "iss": "someone-else"}),
        "refresh token as access token": es256({**base, "aud": service + "#refresh"}),
        "access widened after signing":
            f"{head}.{_b64(json.dumps(widened).encode())}.{signature}",
        "missing expiry": es256({k: v for k, v in base.items() if k != "exp"}),
        "garbage": "not.a.token",
    }


def test_hostile_tokens_are_refused() -> None:
    key = SigningKey.generate()
    issuer = TokenIssuer(key, issuer="iss", service="svc", ttl=300, refresh_ttl=3600)
    genuine = issuer.access_token("alice", [Access("repository", "team-a/app", ("pull",))])
    verifier = _verifier(key)
    assert verifier.verify(genuine.token) == genuine.claims
    tokens = hostile_tokens(key, issuer="iss", service="svc", name="team-a/app",
                            genuine=genuine.token)
    for what, token in tokens.items():
        with pytest.raises(TokenError):
            verifier.verify(token)
            pytest.fail(f"{what}: accepted")


def test_cached_tokens_still_expire() -> None:
    key = SigningKey.generate()
    issuer = TokenIssuer(key, issuer="iss", service="svc", ttl=1, refresh_ttl=3600)
    verifier = _verifier(key, leeway=0.0)
    issued = issuer.access_token("alice", [])
    assert verifier.verify(issued.token) is verifier.verify(issued.token)
    deadline = time.monotonic() + 10
    while time.time() < issued.claims.expires + 0.5 and time.monotonic() < deadline:
        time.sleep(0.2)
    with pytest.raises(TokenError, match="expired"):
        verifier.verify(issued.token)


def test_refresh_tokens_are_not_access_tokens() -> None:
    key = SigningKey.generate()
    issuer = TokenIssuer(key, issuer="iss", service="svc", ttl=300, refresh_ttl=3600)
    verifier = _verifier(key)
    refresh = issuer.refresh_token("alice", "stamp1")
    assert verifier.verify_refresh(refresh) == ("alice", "stamp1")
    with pytest.raises(TokenError):
        verifier.verify(refresh)
    with pytest.raises(TokenError):
        verifier.verify_refresh(issuer.access_token("alice", []).token)


# Users.


def test_password_hashes() -> None:
    stored = hash_password("s3cret")
    scheme, log2_n, r, p, salt, digest = stored.split("$")
    assert (scheme, log2_n, r, p) == ("scrypt", "14", "8", "1")
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(digest)) == 32
    assert hash_password("s3cret") != stored
    assert verify_password(stored, "s3cret")
    assert not verify_password(stored, "s3cret ")
    assert not verify_password("scrypt$99$8$1$AAAA$AAAA", "x")
    assert not verify_password("garbage", "x")
    bcrypted = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    assert verify_password(bcrypted, "pw") and not verify_password(bcrypted, "px")
    assert verify_password("$2y$" + bcrypted[4:], "pw")


def test_user_store_add_list_remove_and_reload(tmp_path: Path) -> None:
    writer = UserStore(tmp_path / "auth")
    reader = UserStore(tmp_path / "auth")
    assert reader.users() == []
    writer.add("alice", "pw1", ["team-a"])
    assert [u.name for u in reader.users()] == ["alice"]
    assert reader.authenticate("alice", "pw1") is not None
    assert reader.authenticate("alice", "nope") is None
    assert reader.authenticate("nobody", "pw1") is None
    with pytest.raises(UserError, match="exists"):
        writer.add("alice", "other")
    stamp = reader.get("alice").stamp  # type: ignore[union-attr]
    writer.add("alice", "pw2", replace=True)
    assert reader.authenticate("alice", "pw2") is not None
    assert reader.get("alice").stamp != stamp  # type: ignore[union-attr]
    for bad in ("", "a:b", "-x", "a b", "x" * 65):
        with pytest.raises(UserError):
            writer.add(bad, "pw")
    with pytest.raises(UserError):
        writer.add("bob", "")
    assert writer.remove("alice") and not writer.remove("alice")
    assert reader.get("alice") is None
    path = tmp_path / "auth" / "users.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(path.parent)) == ["users.json", "users.json.lock"]


def _add_users(directory: str, worker: int) -> None:
    store = UserStore(Path(directory))
    for i in range(3):
        store.add(f"u{worker}-{i}", "pw")


def test_concurrent_edits_lose_no_user(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_users, args=(str(tmp_path), w)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    assert len(UserStore(tmp_path).users()) == 12


def test_htpasswd_users_and_the_users_file_wins(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(b"hpw", bcrypt.gensalt(4)).decode()
    htpasswd.write_text(f"# comment\nhank:$2y${hashed[4:]}\nplain:{{SHA}}xyz\n"
                        f"alice:{hashed}\n")
    store = UserStore(tmp_path / "auth", htpasswd)
    store.add("alice", "from-users-file")
    assert store.authenticate("hank", "hpw") is not None
    assert store.get("hank").source == "htpasswd"  # type: ignore[union-attr]
    assert store.get("plain") is None
    assert store.authenticate("alice", "hpw") is None
    assert store.authenticate("alice", "from-users-file") is not None


# Throttle.


def test_throttle_locks_out_after_failures_and_success_clears(tmp_path: Path) -> None:
    throttle = LoginThrottle(tmp_path, max_failures=3, lockout=60)
    other = LoginThrottle(tmp_path, max_failures=3, lockout=60)
    now = time.time()
    for _ in range(2):
        throttle.failed("alice", "10.0.0.1", now)
    throttle.check("alice", "10.0.0.1")
    throttle.succeeded("alice", "10.0.0.1")
    for _ in range(3):
        throttle.failed("alice", "10.0.0.1", now)
    with pytest.raises(RegistryError) as refused:
        other.check("alice", "10.0.0.1")
    assert refused.value.code.code == "TOOMANYREQUESTS" and refused.value.status == 429
    assert 0 < int(refused.value.headers["Retry-After"]) <= 60
    other.check("alice", "10.0.0.2")
    assert throttle.retry_after("alice", "10.0.0.1", now + 61) == 0
    assert throttle.failed("alice", "10.0.0.1", now + 61) == 1


def test_throttle_counts_per_user_and_address_and_per_user(tmp_path: Path) -> None:
    throttle = LoginThrottle(tmp_path, max_failures=3, lockout=60, user_max_failures=5)
    now = time.time()
    for _ in range(3):
        throttle.failed("alice", "10.0.0.1", now)
    with pytest.raises(RegistryError) as refused:
        throttle.check("alice", "10.0.0.1", now)
    entry = refused.value.entries[0]
    assert "alice" in entry.message and "10.0.0.1" in entry.message
    assert entry.detail["retry_after"] == 60 and entry.detail["retry_at"].endswith("Z")
    throttle.check("bob", "10.0.0.1", now)
    throttle.check("alice", "10.0.0.2", now)
    for _ in range(2):
        throttle.failed("alice", "10.0.0.3", now + 10)
    with pytest.raises(RegistryError) as everywhere:
        throttle.check("alice", "10.0.0.4", now + 10)
    assert "any address" in everywhere.value.message
    assert everywhere.value.headers["Retry-After"] == "60"
    throttle.check("bob", "10.0.0.4", now + 10)
    throttle.succeeded("alice", "10.0.0.4")
    assert throttle.retry_after("alice", "10.0.0.4", now + 10) == 60
    assert throttle.retry_after("alice", "10.0.0.4", now + 71) == 0
    for _ in range(10):
        throttle.failed("", "10.0.0.5", now)
    throttle.check("", "10.0.0.6", now)


def test_throttle_database_is_opened_like_every_store(tmp_path: Path) -> None:
    throttle = LoginThrottle(tmp_path, max_failures=3, lockout=60)
    throttle.failed("alice", "10.0.0.1")
    throttle.close()
    with sqlite3.connect(tmp_path / THROTTLE_FILE) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert schema_version(conn) == 1


def test_throttle_database_without_a_schema_version_keeps_its_counts(tmp_path: Path) -> None:
    # the file as written before the throttle recorded a schema version
    now = time.time()
    conn = sqlite3.connect(tmp_path / THROTTLE_FILE, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS login_failures (user TEXT NOT NULL, "
                 "client TEXT NOT NULL, count INTEGER NOT NULL, last REAL NOT NULL, "
                 "PRIMARY KEY (user, client))")
    conn.executemany("INSERT INTO login_failures VALUES (?, ?, ?, ?)",
                     [("alice", "10.0.0.1", 3, now), ("alice", "", 3, now)])
    conn.close()
    throttle = LoginThrottle(tmp_path, max_failures=3, lockout=60)
    with pytest.raises(RegistryError):
        throttle.check("alice", "10.0.0.1", now)
    throttle.check("alice", "10.0.0.2", now)
    assert throttle.failed("alice", "10.0.0.1", now) == 4
    throttle.close()
    with sqlite3.connect(tmp_path / THROTTLE_FILE) as conn:
        assert schema_version(conn) == 1
    reopened = LoginThrottle(tmp_path, max_failures=3, lockout=60)
    assert reopened.retry_after("alice", "10.0.0.1", now) == 60
    reopened.close()
