"""docker's ``config.json``: ``auths`` round trips, unknown keys kept, file mode, Docker
Hub's key, and credential helpers (``credsStore``/``credHelpers``) through a real
``docker-credential-test`` program put on PATH."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from registry.client import ConfigurationError, Credentials, DockerConfig, erase, lookup, store
from registry.client.credentials import DOCKER_HUB_KEY, default_config_path

pytestmark = pytest.mark.unit

HELPER = f"""#!{sys.executable}
import json, os, sys
path = os.environ["TEST_HELPER_FILE"]
try:
    with open(path) as f:
        data = json.load(f)
except FileNotFoundError:
    data = {{}}
action, stdin = sys.argv[1], sys.stdin.read()
with open(path + ".calls", "a") as f:
    f.write(json.dumps([action, stdin]) + "\\n")
if action == "get":
    entry = data.get(stdin.strip())
    if entry is None:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({{"ServerURL": stdin.strip(), "Username": entry[0], "Secret": entry[1]}}))
elif action == "store":
    doc = json.loads(stdin)
    data[doc["ServerURL"]] = [doc["Username"], doc["Secret"]]
elif action == "erase":
    if data.pop(stdin.strip(), None) is None:
        print("credentials not found in native keychain")
        sys.exit(1)
elif action == "list":
    print(json.dumps({{k: v[0] for k, v in data.items()}}))
else:
    print("unknown action", action)
    sys.exit(2)
with open(path, "w") as f:
    json.dump(data, f)
"""


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``docker-credential-test`` on PATH, keeping its secrets in a JSON file (returned)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    program = bindir / "docker-credential-test"
    program.write_text(HELPER)
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    secrets = tmp_path / "helper-secrets.json"
    monkeypatch.setenv("TEST_HELPER_FILE", str(secrets))
    return secrets


def calls(secrets: Path) -> list[list[str]]:
    """The (action, stdin) pairs the helper received."""
    path = Path(str(secrets) + ".calls")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_auths_round_trip_keeps_unknown_keys(tmp_path: Path) -> None:
    config = tmp_path / "docker" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"auths": {"other:1": {"auth": "eDp5"}},
                                  "psFormat": "table {{.ID}}", "HttpHeaders": {"X": "1"}}))
    assert lookup("registry.example:5000", config) is None
    store("registry.example:5000", "alice", "pa:ss", config)
    doc = json.loads(config.read_text())
    assert doc["psFormat"] == "table {{.ID}}" and doc["HttpHeaders"] == {"X": "1"}
    assert doc["auths"]["other:1"] == {"auth": "eDp5"}
    assert base64.b64decode(doc["auths"]["registry.example:5000"]["auth"]) == b"alice:pa:ss"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert lookup("registry.example:5000", config) == Credentials("alice", "pa:ss")
    assert lookup("other:1", config) == Credentials("x", "y")
    assert erase("registry.example:5000", config) is True
    assert erase("registry.example:5000", config) is False
    assert lookup("registry.example:5000", config) is None
    assert json.loads(config.read_text())["psFormat"] == "table {{.ID}}"


def test_docker_hub_key_and_url_keys(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    store("docker.io", "hubuser", "hubpw", config)
    assert list(json.loads(config.read_text())["auths"]) == [DOCKER_HUB_KEY]
    for name in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        assert lookup(name, config) == Credentials("hubuser", "hubpw")
    config.write_text(json.dumps({"auths": {
        "https://registry.example:5000/v2/": {"username": "u", "password": "p"},
        "tokens.example": {"identitytoken": "refresh-me"},
        "empty.example": {}}}))
    assert lookup("registry.example:5000", config) == Credentials("u", "p")
    assert lookup("tokens.example", config) == Credentials(identity_token="refresh-me")
    assert lookup("empty.example", config) is None
    assert erase("registry.example:5000", config) is True
    assert "https://registry.example:5000/v2/" not in json.loads(config.read_text())["auths"]


def test_default_path_follows_docker_config(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "elsewhere"))
    assert default_config_path() == tmp_path / "elsewhere" / "config.json"
    store("r.example", "a", "b")
    assert (tmp_path / "elsewhere" / "config.json").exists()
    assert lookup("r.example") == Credentials("a", "b")
    monkeypatch.delenv("DOCKER_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_config_path() == tmp_path / "home" / ".docker" / "config.json"


def test_creds_store_helper(tmp_path: Path, helper: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credsStore": "test"}))
    assert lookup("registry.example:5000", config) is None
    store("registry.example:5000", "alice", "secret", config)
    store("docker.io", "hubuser", "hubpw", config)
    doc = json.loads(config.read_text())
    assert doc["auths"] == {"registry.example:5000": {}, DOCKER_HUB_KEY: {}}
    assert "secret" not in config.read_text()
    assert json.loads(helper.read_text()) == {"registry.example:5000": ["alice", "secret"],
                                              DOCKER_HUB_KEY: ["hubuser", "hubpw"]}
    assert lookup("registry.example:5000", config) == Credentials("alice", "secret")
    assert lookup("index.docker.io", config) == Credentials("hubuser", "hubpw")
    assert ["get", DOCKER_HUB_KEY] in calls(helper)
    stored = [c for c in calls(helper) if c[0] == "store"]
    assert json.loads(stored[0][1]) == {"ServerURL": "registry.example:5000",
                                        "Username": "alice", "Secret": "secret"}
    assert erase("registry.example:5000", config) is True
    assert ["erase", "registry.example:5000"] in calls(helper)
    assert lookup("registry.example:5000", config) is None
    assert "registry.example:5000" not in json.loads(helper.read_text())


def test_cred_helpers_per_registry_and_identity_tokens(tmp_path: Path, helper: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credHelpers": {"private.example": "test"},
                                  "auths": {"plain.example": {"auth": "dTpw"}}}))
    helper.write_text(json.dumps({"private.example": ["<token>", "identity"]}))
    assert lookup("private.example", config) == Credentials(identity_token="identity")
    assert lookup("plain.example", config) == Credentials("u", "p")
    store("plain.example", "v", "q", config)
    assert [c for c in calls(helper) if c[0] == "store"] == []
    assert lookup("plain.example", config) == Credentials("v", "q")


def test_helper_failures_are_clear(tmp_path: Path, helper: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credsStore": "missing-one"}))
    with pytest.raises(ConfigurationError) as err:
        lookup("r.example", config)
    assert "docker-credential-missing-one" in str(err.value) and "PATH" in str(err.value)
    broken = helper.parent / "bin" / "docker-credential-broken"
    broken.write_text("#!/bin/sh\necho 'keychain locked' >&2\nexit 3\n")
    broken.chmod(0o755)
    config.write_text(json.dumps({"credsStore": "broken"}))
    with pytest.raises(ConfigurationError) as err:
        lookup("r.example", config)
    assert "docker-credential-broken get failed (exit 3): keychain locked" in str(err.value)


def test_malformed_config_files(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    for text, fragment in [("{", "not valid JSON"), ("[]", "expected a JSON object"),
                           ('{"auths": []}', "'auths' must be an object"),
                           ('{"auths": {"r": {"auth": "%%%"}}}', "not base64"),
                           ('{"auths": {"r": {"auth": "bm9jb2xvbg=="}}}', "user:password")]:
        config.write_text(text)
        with pytest.raises(ConfigurationError) as err:
            DockerConfig(config).lookup("r")
        assert fragment in str(err.value) and str(config) in str(err.value)
