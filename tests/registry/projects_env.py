"""A TLS registry with projects for the project tests, on SQLite or PostgreSQL: users made
and projects created by the ``registry`` commands before the server starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from registry.testing.processes import ours
from tests.registry.server import REPO_ROOT
from tests.registry.test_auth_server import AuthServer

T = TypeVar("T")
USERS = {"root": "root-pw", "dev": "dev-pw", "guest": "guest-pw", "maint": "maint-pw",
         "carol": "carol-pw", "outsider": "outsider-pw", "padmin": "padmin-pw"}
CONFIG = """
admins = ["root"]

[[access]]
repository = "team/legacy"
users = ["carol"]
actions = ["pull", "push"]
"""


def registry_cmd(root: Path, *args: str, env: Mapping[str, str] | None = None,
                 stdin: str = "", config: Path | None = None
                 ) -> subprocess.CompletedProcess[str]:
    """Run ``registry ARGS --root ROOT [--config CONFIG]`` as a program."""
    extra = ["--root", str(root)] + (["--config", str(config)] if config else [])
    return subprocess.run([sys.executable, "-m", "registry.cli", *args, *extra],
                          input=stdin, capture_output=True, text=True, timeout=120,
                          cwd=REPO_ROOT, env={**os.environ, **(env or {})})


def start_project_server(tmp: Path, *, metadata_url: str = "", config: str = CONFIG,
                         users: Mapping[str, str] = USERS,
                         setup: Callable[[Callable[..., subprocess.CompletedProcess[str]]],
                                         None] | None = None) -> AuthServer:
    """Make the users, run ``setup(cmd)`` (``cmd(*args)`` runs a ``registry`` command on
    this root and asserts it succeeds), then start ``registry serve --tls``."""
    root = tmp / "root"
    env = {"REGISTRY_METADATA_URL": metadata_url} if metadata_url else {}
    config_file = tmp / "config.toml"
    config_file.write_text(config)

    def cmd(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        done = registry_cmd(root, *args, env=env, stdin=stdin, config=config_file)
        assert done.returncode == 0, done.stderr
        return done

    if metadata_url:
        cmd("migrate")
    for name, password in users.items():
        cmd("user", "add", name, "--password-stdin", stdin=f"{password}\n")
    if setup is not None:
        setup(cmd)
    proc = ours(root, tls=True, extra=["--config", str(config_file)], env=env).start()
    return AuthServer(proc, root)


def eventually(check: Callable[[], T], timeout: float = 15.0) -> T:
    """``check()`` once it stops raising AssertionError (a change made through one server
    worker reaches the others within a second)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
