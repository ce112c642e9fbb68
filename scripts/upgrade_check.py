"""Check that a data directory made by an older ``registry`` works unchanged with this one.

    .venv/bin/python scripts/upgrade_check.py --old /path/to/older/.venv/bin/registry

The older command adds users, serves the root over TLS with access rules while images are
pushed, and answers a set of requests (pushes and pulls by users with different rights,
anonymous pulls, a delete, a wrong password); this checkout's ``registry`` then serves the
same root with the same config and must answer every request the same way and serve the
images the older one stored. Exit status 0 when it does, 1 with the differences otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from registry.testing.processes import RegistryProcess, free_port  # noqa: E402

SERVICE = "pybuild-registry"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
PASSWORDS = {"alice": "alice-pw", "reader": "reader-pw", "root": "root-pw"}
CONFIG = """admins = ["root"]

[[access]]
repository = "team-a/*"
users = ["alice"]
actions = ["pull", "push"]

[[access]]
repository = "team-a/*"
users = ["reader"]
actions = ["pull"]

[[access]]
repository = "public/**"
anonymous = true
actions = ["pull"]
"""


class Registry:
    """One ``registry`` command serving ``root`` over TLS on ``port``."""

    def __init__(self, command: list[str], root: Path, config: Path, port: int) -> None:
        self.command = command
        self.root = root
        self.config = config
        self.port = port

    def cli(self, *args: str, stdin: str = "") -> str:
        """Run a subcommand; its output."""
        proc = subprocess.run([*self.command, *args], input=stdin, capture_output=True,
                              text=True, timeout=120)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(self.command)} {' '.join(args)}: {proc.stderr}")
        return proc.stdout

    def serve(self, log: Path) -> RegistryProcess:
        """Start the server (stop it with ``stop``)."""
        argv = [*self.command, "serve", "--tls", "--addr", f"127.0.0.1:{self.port}",
                "--root", str(self.root), "--workers", "2", "--config", str(self.config)]
        return RegistryProcess(argv, "127.0.0.1", self.port, log, scheme="https").start()

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTPS client trusting the root's CA."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=f"https://127.0.0.1:{self.port}", headers=headers,
                            verify=str(self.root / "tls" / "ca.crt"), timeout=60)

    def token(self, user: str | None, scope: str) -> str:
        """A token of ``user`` (anonymous for ``None``) for ``scope``."""
        auth = None if user is None else (user, PASSWORDS[user])
        with self.client() as c:
            r = c.get("/token", params={"service": SERVICE, "scope": scope}, auth=auth)
        r.raise_for_status()
        return str(r.json()["token"])

    def push(self, user: str, repo: str, tag: str, payload: str) -> int:
        """Push a one-layer image; the status of the last request."""
        with self.client(self.token(user, f"repository:{repo}:pull,push")) as c:
            described = []
            config = {"architecture": "amd64", "os": "linux", "payload": payload,
                      "rootfs": {"type": "layers", "diff_ids": []}}
            for data in (json.dumps(config).encode(), payload.encode()):
                digest = "sha256:" + hashlib.sha256(data).hexdigest()
                r = c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest},
                           content=data)
                if r.status_code != 201:
                    return r.status_code
                described.append({"digest": digest, "size": len(data)})
            manifest = {"schemaVersion": 2, "mediaType": MANIFEST,
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                   **described[0]},
                        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                    **described[1]}]}
            r = c.put(f"/v2/{repo}/manifests/{tag}", content=json.dumps(manifest).encode(),
                      headers={"Content-Type": MANIFEST})
            return r.status_code

    def ask(self, user: str | None, repo: str, action: str, method: str, path: str
            ) -> tuple[int, str]:
        """The status of one request with a token for ``action`` and the digest of what
        it answered (error messages may change between versions: only their codes)."""
        with self.client(self.token(user, f"repository:{repo}:{action}")) as c:
            r = c.request(method, f"/v2/{repo}/{path}", headers={"Accept": MANIFEST})
        if r.status_code >= 400:
            return r.status_code, ",".join(e["code"] for e in r.json()["errors"])
        return r.status_code, hashlib.sha256(r.content).hexdigest()[:12]


def observe(reg: Registry) -> dict[str, object]:
    """The answers the two versions must agree on."""
    out: dict[str, object] = {
        "alice pushes to team-a": reg.push("alice", "team-a/app", "2", "two"),
        "reader pushes to team-a": reg.push("reader", "team-a/app", "3", "three"),
        "alice pushes to team-b": reg.push("alice", "team-b/x", "1", "x"),
        "root pushes to team-b": reg.push("root", "team-b/y", "1", "y"),
    }
    for user, repo in (("reader", "team-a/app"), ("alice", "team-a/app"), (None, "public/lib"),
                       (None, "team-a/app"), ("alice", "public/lib"), ("alice", "team-b/y")):
        out[f"{user or 'anonymous'} pulls {repo}:1"] = reg.ask(user, repo, "pull", "GET",
                                                                "manifests/1")
    out["alice deletes"] = reg.ask("alice", "team-a/app", "delete", "DELETE", "manifests/1")
    with reg.client() as c:
        out["a wrong password"] = c.get("/token", auth=("alice", "wrong")).status_code
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the check; 0 when both versions answer alike."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True, help="the older registry command")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="registry-upgrade-") as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        root, config = work / "root", work / "config.toml"
        config.write_text(CONFIG)
        port = free_port()
        old = Registry([args.old], root, config, port)
        new = Registry([sys.executable, "-m", "registry.cli"], root, config, port)
        for name, password in PASSWORDS.items():
            old.cli("user", "add", name, "--password-stdin", "--root", str(root),
                    stdin=f"{password}\n")
        server = old.serve(work / "old.log")
        try:
            assert old.push("alice", "team-a/app", "1", "one") == 201
            assert old.push("root", "public/lib", "1", "lib") == 201
            before = observe(old)
        finally:
            server.stop()
        server = new.serve(work / "new.log")
        try:
            after = observe(new)
            users = new.cli("user", "list", "--root", str(root))
        finally:
            server.stop()
    for key, value in before.items():
        print(f"{key}: {value}" + ("" if after.get(key) == value else
                                   f"  CHANGED to {after.get(key)}"))
    if before != after or sorted(line.split("\t")[0] for line in users.splitlines()) != sorted(
            PASSWORDS):
        print("upgrade check FAILED")
        return 1
    print("upgrade check passed: the older root answers the same")
    return 0


if __name__ == "__main__":
    sys.exit(main())
