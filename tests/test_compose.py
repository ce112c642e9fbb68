"""Dogfooding: pybuild builds the registry's own image (FROM debian:bookworm through a local
docker.io mirror), docker-compose runs it with TLS and token auth, docker and pybuild log in,
pybuild pushes an image that docker pulls and runs, and the data outlives ``down``/``up``.

The flow is the README's first command, ``scripts/demo.sh``, run with its own compose project,
port, image name, directories and docker config; the checks after it look at the running
service from outside. The same script without a Docker engine, and the Dockerfile built by
BuildKit, are checked too. Every container, volume, network and image made here is removed.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from registry.testing.processes import free_port
from tests.builder.bases import CACHE_DIR, load_into_docker, make_base_images
from tests.peers import DOCKER, Dockerd, docker, require

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
EXAMPLE = REPO / "examples/dockerfiles/heredocs"
#: The pybuild store the demo runs of every session share: its build cache makes the
#: registry image in seconds once one session has built it.
SHARED_STORE = CACHE_DIR / "demo-store"
CERTS_D = Path("/etc/docker/certs.d")
DEMO_TIMEOUT = 1500  # debootstrap on a cold machine, then two builds
STEP_TIMEOUT = 300
TLS_SAN = "registry.test"
BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def run(argv: list[str], *, env: dict[str, str] | None = None, input: bytes | None = None,
        timeout: float = STEP_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command with a time limit; fail the test with its output when it fails."""
    proc = subprocess.run(argv, env=env, input=input.decode() if input else None,
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                    f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def clean_environment(**extra: str) -> dict[str, str]:
    """This environment without registry settings that would leak into the flow."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REGISTRY_", "PYBUILD_DEMO_")) and k != "PYBUILD_ROOT"}
    return {**env, **extra}


@dataclass
class Demo:
    """One run of ``scripts/demo.sh`` and what it was told to use."""

    env: dict[str, str]
    work: Path
    project: str
    port: int
    image: str
    output: str = ""

    @property
    def address(self) -> str:
        """The registry as image references name it."""
        return f"127.0.0.1:{self.port}"

    @property
    def example(self) -> str:
        """The example image the demo pushes."""
        return f"{self.address}/examples/heredocs:latest"

    def compose(self, *args: str, check: bool = True, input: bytes | None = None
                ) -> subprocess.CompletedProcess[str]:
        """``docker-compose`` on the demo's project, with the demo's environment."""
        return run(["docker-compose", "-p", self.project, "-f", str(COMPOSE_FILE), *args],
                   env=self.env, check=check, input=input)

    def run_script(self) -> None:
        """Run the demo; fail with the end of its output when it fails."""
        proc = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=DEMO_TIMEOUT)
        self.output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            pytest.fail(f"scripts/demo.sh failed ({proc.returncode}):\n{self.output[-6000:]}")


def make_demo(tmp_path: Path, engine: str) -> Demo:
    """A demo run with a project name, port, image name and directories of its own."""
    token = uuid.uuid4().hex[:8]
    port = free_port()
    work = tmp_path / "demo"
    env = clean_environment(
        PYBUILD_DEMO_DIR=str(work), PYBUILD_DEMO_PROJECT=f"pybuildtest{token}",
        PYBUILD_DEMO_ENGINE=engine, PYBUILD_DEMO_INSTALL="0", REGISTRY_PORT=str(port),
        REGISTRY_IMAGE=f"pybuild-test/registry:{token}", REGISTRY_TLS_SAN=TLS_SAN,
        DOCKER_CONFIG=str(tmp_path / "docker-config"), PYBUILD_ROOT=str(SHARED_STORE))
    return Demo(env, work, f"pybuildtest{token}", port, f"pybuild-test/registry:{token}")


def remove_demo(demo: Demo, compose: bool) -> None:
    """Remove what a demo run left: containers, volumes, network, images, trusted CA."""
    if compose:
        demo.compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False)
        run([DOCKER, "rmi", "-f", demo.image, demo.example], check=False)
    run([str(REPO / ".venv/bin/pybuild"), "--root", str(SHARED_STORE), "rmi", demo.image,
         demo.example], check=False)
    shutil.rmtree(CERTS_D / demo.address, ignore_errors=True)


def expected_output() -> str:
    """What the example image prints when run."""
    return json.loads((EXAMPLE / "expect.json").read_text())["stdout"]


def health(container: str) -> str:
    """docker's health status of a container."""
    return run([DOCKER, "inspect", "-f", "{{.State.Health.Status}}", container]).stdout.strip()


def wait_healthy(demo: Demo, timeout: float = 120) -> str:
    """The registry container once docker finds it healthy; fail when it does not become so."""
    container = demo.compose("ps", "-q", "registry").stdout.strip()
    assert container, "no registry container is running"
    deadline = time.monotonic() + timeout
    while (status := health(container)) != "healthy":
        if status == "unhealthy" or time.monotonic() > deadline:
            logs = demo.compose("logs", "--tail", "40", "registry", check=False).stdout
            pytest.fail(f"the registry is {status}:\n{logs}")
        time.sleep(1)
    return container


def login(demo: Demo, user: str, password: str, config: Path) -> None:
    """``docker login`` as ``user`` with the docker config directory ``config``."""
    run([DOCKER, "--config", str(config), "login", "-u", user, "--password-stdin",
         demo.address], input=password.encode())


@pytest.fixture
def compose_demo(dockerd: Dockerd, tmp_path: Path) -> Iterator[Demo]:
    """The demo, run with docker-compose; everything it made is removed afterwards."""
    for tool in ("docker-compose", "debootstrap", "busybox", "curl"):
        require(tool)
    demo = make_demo(tmp_path, "docker")
    try:
        demo.run_script()
        yield demo
    finally:
        remove_demo(demo, compose=True)


def test_demo_runs_the_registry_with_docker_compose(compose_demo: Demo, tmp_path: Path) -> None:
    demo = compose_demo
    out = demo.output
    # The registry image came FROM debian:bookworm through the mirror, built by pybuild.
    build_log = (demo.work / "build-registry.log").read_text()
    assert "pull docker.io/library/debian:bookworm" in build_log
    assert "Login Succeeded" in out
    assert expected_output() in "\n".join(line.removeprefix("   | ") for line in out.splitlines())
    assert "docker run after the restart: built with heredocs" in out

    # The image: an unprivileged user, the port, the data volume, the health check.
    config = json.loads(run([DOCKER, "image", "inspect", "-f", "{{json .Config}}",
                             demo.image]).stdout)
    assert config["User"] == "registry"
    assert config["Entrypoint"] == ["registry"] and config["Cmd"] == ["serve"]
    assert "5000/tcp" in config["ExposedPorts"]
    assert "/var/lib/registry" in config["Volumes"]
    assert config["Healthcheck"]["Test"][0] == "CMD"

    container = wait_healthy(demo)
    assert demo.compose("exec", "-T", "registry", "id", "-u").stdout.strip() == "10001"

    # Settings from the environment (REGISTRY_TLS_SAN) and from the mounted config file.
    der = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", demo.port)))
    names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert TLS_SAN in names
    mounted = demo.compose("exec", "-T", "registry", "cat", "/etc/registry/registry.toml")
    assert mounted.stdout == (REPO / "deploy/registry.toml").read_text()

    # The CA, exported to its own volume, is the one docker trusts.
    ca_volume = run([DOCKER, "volume", "inspect", "-f", "{{.Mountpoint}}",
                     f"{demo.project}_registry-ca"]).stdout.strip()
    trusted = (CERTS_D / demo.address / "ca.crt").read_bytes()
    assert (Path(ca_volume) / "ca.crt").read_bytes() == trusted
    anonymous = run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
                     str(CERTS_D / demo.address / "ca.crt"),
                     f"https://{demo.address}/v2/examples/heredocs/tags/list"])
    assert anonymous.stdout == "401"
    metrics = run(["curl", "-fsS", "--cacert", str(CERTS_D / demo.address / "ca.crt"),
                   f"https://{demo.address}/metrics"])
    assert "registry_http_requests_total" in metrics.stdout

    # Another user: the config file's rule lets every user push.
    demo.compose("exec", "-T", "registry", "registry", "user", "add", "bob",
                 "--password-stdin", input=b"bob-secret\n")
    bob = tmp_path / "bob-config"
    login(demo, "bob", "bob-secret", bob)
    bob_ref = f"{demo.address}/bob/heredocs:1"
    run([DOCKER, "tag", demo.example, bob_ref])
    try:
        run([DOCKER, "--config", str(bob), "push", bob_ref])
    finally:
        run([DOCKER, "rmi", bob_ref], check=False)

    # down and up once more: users, images and the CA stay.
    demo.compose("down", "--timeout", "10")
    assert run([DOCKER, "ps", "-aq", "--filter", f"id={container}"]).stdout.strip() == ""
    demo.compose("up", "-d")
    wait_healthy(demo)
    assert (Path(ca_volume) / "ca.crt").read_bytes() == trusted
    fresh = tmp_path / "fresh-config"
    login(demo, "bob", "bob-secret", fresh)
    run([DOCKER, "rmi", "-f", demo.example], check=False)
    run([DOCKER, "--config", str(fresh), "pull", "-q", bob_ref])
    try:
        shown = run([DOCKER, "run", "--rm", bob_ref]).stdout
    finally:
        run([DOCKER, "rmi", bob_ref], check=False)
    assert shown == expected_output()


def test_demo_without_a_docker_engine(tmp_path: Path) -> None:
    """No Docker engine: our registry process, pybuild pulls and runs the image."""
    for tool in ("debootstrap", "busybox", "curl"):
        require(tool)
    demo = make_demo(tmp_path, "none")
    try:
        demo.run_script()
    finally:
        remove_demo(demo, compose=False)
    out = demo.output
    assert "without a Docker engine" in out
    assert "pybuild run after the restart: built with heredocs" in out
    assert (demo.work / "registry" / "metadata.db").exists()
    assert (demo.work / "registry-image.tar").stat().st_size > 0
    assert "pull docker.io/library/debian:bookworm" in (
        demo.work / "build-registry.log").read_text()


def test_dockerfile_builds_with_buildkit(dockerd: Dockerd, tmp_path: Path) -> None:
    """BuildKit builds the same Dockerfile (FROM the same local Debian base) into an image
    that runs the registry."""
    bases = make_base_images(tmp_path / "bases")
    load_into_docker(bases)
    tag = f"pybuild-test/registry-buildkit:{uuid.uuid4().hex[:8]}"
    secret = ["--secret", f"id=cacert,src={BUNDLE}"] if BUNDLE.exists() else []
    try:
        docker("build", "-q", *secret, "-t", tag, str(REPO), timeout=900)
        config = json.loads(docker("image", "inspect", "-f", "{{json .Config}}",
                                   tag).stdout)
        assert config["User"] == "registry"
        assert config["Entrypoint"] == ["registry"] and config["Cmd"] == ["serve"]
        listed = docker("run", "--rm", tag, "user", "list", "--root", "/tmp/r").stdout
        assert listed == b""
        docker("run", "--rm", "--entrypoint", "python", tag, "-c",
               "import registry.app, builder.cli; print('ok')")
    finally:
        docker("rmi", "-f", tag, check=False)
