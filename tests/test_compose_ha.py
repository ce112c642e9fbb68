"""The scaled-out variant: ``scripts/demo.sh --ha`` builds the PostgreSQL, Ceph RGW and
HAProxy images (deploy/ha/Dockerfile) and the registry's with pybuild, runs
docker-compose.ha.yml, pushes through the balancer, pulls and runs, and pulls again with a
replica stopped. The checks after it look at the running deployment from outside: every
replica served requests (no stickiness), they share users and images, and all is removed
at the end."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers import DOCKER, Dockerd, require
from tests.test_compose import (
    DEMO_TIMEOUT,
    REPO,
    SHARED_STORE,
    Demo,
    expected_output,
    make_demo,
    run,
)

COMPOSE_FILE = REPO / "docker-compose.ha.yml"
REPLICAS = ("registry-1", "registry-2", "registry-3")


class HaDemo(Demo):
    """A ``demo.sh --ha`` run: its compose file and the three images of deploy/ha."""

    def compose(self, *args: str, check: bool = True, input: bytes | None = None
                ) -> subprocess.CompletedProcess[str]:
        return run(["docker-compose", "-p", self.project, "-f", str(COMPOSE_FILE), *args],
                   env=self.env, check=check, input=input)

    def load_secrets(self) -> None:
        """The database password and S3 keys the demo made (the compose file needs them)."""
        secrets = self.work / "ha-secrets.env"
        if secrets.exists():
            for line in secrets.read_text().splitlines():
                key, _, value = line.partition("=")
                self.env[key] = value

    def run_script(self) -> None:
        proc = subprocess.run(["bash", "scripts/demo.sh", "--ha"], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=DEMO_TIMEOUT)
        self.output = proc.stdout + proc.stderr
        self.load_secrets()
        if proc.returncode != 0:
            pytest.fail(f"scripts/demo.sh --ha failed ({proc.returncode}):\n"
                        f"{self.output[-6000:]}")


@pytest.fixture
def ha_demo(dockerd: Dockerd, tmp_path: Path) -> Iterator[HaDemo]:
    """The HA demo with names of its own; every container, volume and image is removed."""
    for tool in ("docker-compose", "debootstrap", "busybox", "curl"):
        require(tool)
    base = make_demo(tmp_path, "docker")
    token = base.project.removeprefix("pybuildtest")
    images = {f"HA_{part.upper()}_IMAGE": f"pybuild-test/ha-{part}:{token}"
              for part in ("postgres", "rgw", "haproxy")}
    demo = HaDemo({**base.env, **images}, base.work, base.project, base.port, base.image)
    try:
        demo.run_script()
        yield demo
    finally:
        demo.load_secrets()
        demo.compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False)
        run([DOCKER, "rmi", "-f", demo.image, demo.example, *images.values()], check=False)
        run([str(REPO / ".venv/bin/pybuild"), "--root", str(SHARED_STORE), "rmi",
             demo.image, demo.example, *images.values()], check=False)


def test_demo_ha_runs_three_replicas_behind_haproxy(ha_demo: HaDemo) -> None:
    demo = ha_demo
    out = demo.output
    assert "Login Succeeded" in out
    assert expected_output() in "\n".join(line.removeprefix("   | ") for line in out.splitlines())
    assert "docker run with two replicas: built with heredocs" in out
    assert "registry-2 is back" in out

    # Everything up; the balancer is the only published port.
    for service in (*REPLICAS, "postgres", "rgw", "balancer"):
        container = demo.compose("ps", "-q", service).stdout.strip()
        assert container, f"{service} is not running"
        state = run([DOCKER, "inspect", "-f", "{{.State.Status}}", container]).stdout.strip()
        assert state == "running", f"{service} is {state}"
    assert demo.compose("port", "balancer", "5000").stdout.strip() == demo.address
    anonymous = run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                     f"http://{demo.address}/v2/examples/heredocs/tags/list"])
    assert anonymous.stdout == "401"

    # No stickiness: the push and pulls were spread over every replica.
    logs = demo.compose("logs", "--no-color", "balancer").stdout
    served = {name for name in REPLICAS if f"replicas/{name} " in logs}
    assert served == set(REPLICAS), logs[-3000:]

    # The replicas share the users and the images (PostgreSQL and the bucket).
    for name in REPLICAS:
        listed = demo.compose("exec", "-T", name, "registry", "user", "list").stdout
        assert listed.split()[0] == "admin", listed
