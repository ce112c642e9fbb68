"""Token issue rate with many projects and robot accounts against almost none, side by
side in one run.

Two data directories, each served by ``registry serve --tls`` (token auth, 2 workers):

* ``small``: user ``bench`` (a developer of project ``bench``), project ``bench`` and its
  one robot ``robot$bench+ci`` (pull,push): the least there can be to log a robot in;
* ``large``: the same, plus 999 more projects (each with one member) and 999 more robots,
  one in each: 1,000 projects and 1,000 robots.

On each, ``--clients`` threads, each with one persistent HTTPS connection (httpx), ask
``GET /token?scope=repository:bench/app:pull,push`` with basic credentials as fast as they
are answered, for ``--seconds`` or ``--requests`` in all, whichever comes first: once with
the robot's secret, once with the user's password (a user costs a scrypt hash per login,
so its rate is far lower; it shows that projects and robots do not slow the users'
logins either). The two directories alternate for ``--rounds`` rounds; the best of each
counts. Prints the rates and the ratios large/small (the target is at least 0.80).
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from registry.auth.users import UserStore  # noqa: E402
from registry.projects.model import Member, Project  # noqa: E402
from registry.projects.store import SqliteProjectStore  # noqa: E402
from registry.robots.service import RobotService  # noqa: E402
from registry.robots.store import SqliteRobotStore  # noqa: E402
from registry.testing.processes import RegistryProcess, ours  # noqa: E402

USER, PASSWORD = "bench", "bench-password"
PROJECT, SCOPE = "bench", "repository:bench/app:pull,push"


def populate(root: Path, extra: int) -> tuple[str, str]:
    """Make the user, project ``bench`` and its robot, and ``extra`` more projects and
    robots; the robot's name and secret."""
    UserStore(root / "auth").add(USER, PASSWORD)
    projects = SqliteProjectStore(root)
    robots = RobotService(SqliteRobotStore(root), lambda name: projects.get(name) is not None)
    try:
        projects.create(Project(PROJECT))
        projects.set_member(Member(PROJECT, USER, "developer"))
        made = robots.create(PROJECT, "ci", "pull,push")
        for i in range(extra):
            name = f"team-{i:04d}"
            projects.create(Project(name))
            projects.set_member(Member(name, f"dev{i}", "developer"))
            robots.create(name, "ci", "pull,push" if i % 2 else "pull", 365)
    finally:
        projects.close()
        robots.store.close()
    return made.name, made.secret


def client(server: RegistryProcess, root: Path) -> httpx.Client:
    """An HTTPS client (one persistent connection) trusting the server's private CA."""
    context = ssl.create_default_context(cafile=str(root / "tls" / "ca.crt"))
    return httpx.Client(base_url=server.url, timeout=60,
                        transport=httpx.HTTPTransport(verify=context))


def rate(server: RegistryProcess, root: Path, auth: tuple[str, str], clients: int,
         seconds: float, requests: int) -> float:
    """Tokens issued per second by ``clients`` threads asking with ``auth``."""
    count = 0
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def work() -> None:
        nonlocal count
        with client(server, root) as c:
            while time.monotonic() < deadline:
                with lock:
                    if count >= requests:
                        return
                    count += 1
                r = c.get("/token", params={"scope": SCOPE}, auth=auth)
                if r.status_code != 200 or "push" not in r.json()["scope"]:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                    return

    with client(server, root) as c:  # warm up: connections, caches, the scrypt dummy
        c.get("/token", params={"scope": SCOPE}, auth=auth).raise_for_status()
    threads = [threading.Thread(target=work) for _ in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    if failures:
        raise SystemExit(f"token request refused: {failures[0]}")
    return count / elapsed


def main() -> int:
    """Run both data directories and print the rates and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--requests", type=int, default=20000, help="per measurement")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--count", type=int, default=1000,
                        help="projects and robots in the large directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pybuild-tokenbench-") as tmpdir:
        tmp = Path(tmpdir)
        started = time.monotonic()
        creds = {"small": populate(tmp / "small", 0),
                 "large": populate(tmp / "large", args.count - 1)}
        print(f"populated in {time.monotonic() - started:.1f} s: small 1 project 1 robot, "
              f"large {args.count} projects {args.count} robots")
        best: dict[str, dict[str, float]] = {"small": {}, "large": {}}
        for round_ in range(1, max(1, args.rounds) + 1):
            for size in ("small", "large"):
                root = tmp / size
                server = ours(root, workers=args.workers, tls=True,
                              extra=["--no-access-log"]).start()
                try:
                    for who, auth in (("robot", creds[size]), ("user", (USER, PASSWORD))):
                        got = rate(server, root, auth, args.clients, args.seconds,
                                   args.requests)
                        print(f"  round {round_} {size:5s} {who:5s} {got:8.1f} tokens/s")
                        best[size][who] = max(best[size].get(who, 0.0), got)
                finally:
                    server.stop()
        ratios = {}
        for who in ("robot", "user"):
            ratios[who] = best["large"][who] / best["small"][who]
            print(f"best {who:5s} small {best['small'][who]:8.1f}/s  large "
                  f"{best['large'][who]:8.1f}/s  ratio large/small {ratios[who]:5.2f} "
                  "(target >= 0.80)")
        print(json.dumps({"best": best, "ratios": ratios, "count": args.count}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
