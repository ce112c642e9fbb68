"""The network of RUN steps and ``pybuild run``: default (a namespace of its own behind
slirp4netns), none, host (behind the network.host entitlement), resolv.conf, /etc/hosts
and ``--add-host``.

Reachability is checked against servers the tests start themselves: on the host's
127.0.0.1 (which the default network must not reach), and in a network namespace of the
test's own (:mod:`tests.builder.networld`) holding a non-loopback address, a DNS server and
a server on its own loopback, with pybuild started inside it.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from builder.cli import main
from builder.errors import BuildError
from builder.executor import ExtraHost, NamespaceExecutor, RunResult, RunSpec
from builder.executor import network as net
from tests.builder import networld
from tests.builder.bases import BaseImages, load_into_pybuild
from tests.builder.examples import pybuild_command
from tests.builder.test_build import image_tree
from tests.peers import require

PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
TIMEOUT = 120


@pytest.fixture
def rootfs(busybox_rootfs: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, dest, symlinks=True)
    return dest


@pytest.fixture(params=["direct", "prepared"])
def stack(request: pytest.FixtureRequest, rootfs: Path,
          monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a run gets its stack: started once its namespace exists (direct), or a
    namespace prepared ahead and joined (a run before has had it made)."""
    require("slirp4netns")
    prepared = request.param == "prepared"
    monkeypatch.setattr(net, "PREPARE_AHEAD", prepared)
    if prepared:
        for _ in range(2):  # a process prepares ahead from its second run on
            assert run(rootfs, "true")[0].exit_code == 0
        deadline = time.monotonic() + 30
        while net._spares.ready is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert net._spares.ready is not None, "no network namespace was prepared"
    return str(request.param)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[networld.World]:
    require("ip")
    require("slirp4netns")
    w = networld.World(tmp_path)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def loopback_server() -> Iterator[tuple[int, list[str]]]:
    """A TCP server on the host's 127.0.0.1: its port and the peers that reached it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    seen: list[str] = []

    def serve() -> None:
        while True:
            try:
                conn, peer = server.accept()
            except OSError:
                return
            seen.append(peer[0])
            with conn:
                conn.sendall(b"host loopback secret\n")

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield server.getsockname()[1], seen
    finally:
        server.close()


def run(rootfs: Path, script: str, **kwargs: object) -> tuple[RunResult, str]:
    chunks: list[bytes] = []
    spec = RunSpec(("sh", "-c", script), (PATH,), **kwargs)  # type: ignore[arg-type]
    result = NamespaceExecutor(output=chunks.append, timeout=TIMEOUT).run(spec, rootfs)
    return result, b"".join(chunks).decode(errors="replace")


@contextmanager
def image_file(root: Path, name: str) -> Iterator[Path]:
    """The filesystem of image ``name``, mounted while the context lasts."""
    with image_tree(root, name) as (tree, _):
        yield tree


def build(root: Path, context: Path, dockerfile: str, *args: str) -> int:
    (context / "Dockerfile").write_text(dockerfile)
    return main(["--root", str(root), "build", "--progress=plain", *args, str(context)])


def in_world(world: networld.World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(world.argv(*pybuild_command(), *args), capture_output=True,
                          text=True, timeout=TIMEOUT)


# --- files and flags ------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "name", "address"), [
    ("db:10.1.2.3", "db", "10.1.2.3"),
    ("db=10.1.2.3", "db", "10.1.2.3"),
    ("v6:::1", "v6", "::1"),
    ("v6=[2001:db8::1]", "v6", "2001:db8::1"),
    ("v6:[2001:db8::1]", "v6", "2001:db8::1"),
])
def test_add_host_syntax(value: str, name: str, address: str) -> None:
    assert net.parse_extra_host(value) == ExtraHost(name, address)


@pytest.mark.parametrize(("value", "message"), [
    ("nohost", "--add-host nohost: expected HOST:IP (or HOST=IP)"),
    (":10.0.0.1", "--add-host :10.0.0.1: expected HOST:IP (or HOST=IP)"),
    ("db:", "--add-host db:: expected HOST:IP (or HOST=IP)"),
    ("db:10.0.0.300", "--add-host db:10.0.0.300: '10.0.0.300' is not an IP address "
                      "(or host-gateway)"),
    ("a b:10.0.0.1", "--add-host a b:10.0.0.1: 'a b' is not a host name"),
])
def test_add_host_errors(value: str, message: str) -> None:
    with pytest.raises(BuildError) as info:
        net.parse_extra_host(value)
    assert str(info.value) == message


def test_host_gateway_is_the_hosts_own_address() -> None:
    address = ipaddress.ip_address(net.parse_extra_host("gw:host-gateway").address)
    assert address.version == 4 and not address.is_loopback
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((str(address), 0))  # an address of this host


@pytest.mark.parametrize(("host", "systemd", "expected"), [
    ("nameserver 10.1.1.1\nnameserver 127.0.0.1\nnameserver fd00::53\nsearch corp.example\n"
     "options ndots:2\n", None,
     "nameserver 10.1.1.1\nsearch corp.example\noptions ndots:2\n"),
    ("# only loopback\nnameserver 127.0.0.1\nnameserver ::1\nsearch a.example\n", None,
     "nameserver 8.8.8.8\nnameserver 8.8.4.4\nsearch a.example\n"),
    ("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n",
     "nameserver 10.9.9.9\nnameserver 10.9.9.10\nsearch lan\n",
     "nameserver 10.9.9.9\nnameserver 10.9.9.10\nsearch lan\n"),
    ("nameserver 127.0.0.53\n", None, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"),
    ("", None, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"),
])
def test_resolv_conf_of_the_default_network(tmp_path: Path, host: str, systemd: str | None,
                                            expected: str) -> None:
    source, stub = tmp_path / "resolv.conf", tmp_path / "systemd-resolv.conf"
    source.write_text(host)
    if systemd is not None:
        stub.write_text(systemd)
    assert net.resolv_conf("default", source, stub).decode() == expected
    assert net.resolv_conf("host", source, stub).decode() == host
    assert net.resolv_conf("none", source, stub) == b""


def test_hosts_file_lines() -> None:
    extra = (ExtraHost("db", "10.1.2.3"), ExtraHost("v6", "2001:db8::1"))
    own = net.hosts_file(RunSpec(("true",), (), hostname="box", extra_hosts=extra)).decode()
    assert own == ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                   "127.0.1.1\tbox\n10.1.2.3\tdb\n2001:db8::1\tv6\n")
    host = net.hosts_file(RunSpec(("true",), (), network="host", extra_hosts=extra)).decode()
    assert host.startswith(Path("/etc/hosts").read_text().rstrip("\n") + "\n")
    assert host.endswith("10.1.2.3\tdb\n2001:db8::1\tv6\n")


# --- the executor on this host --------------------------------------------------------------

def test_default_network_files_and_interfaces(rootfs: Path, stack: str) -> None:
    spare = net._spares.ready
    result, out = run(rootfs, "cat /proc/net/dev /etc/hosts /etc/resolv.conf; ip -4 addr; "
                              "ip route", hostname="netbox",
                      extra_hosts=(ExtraHost("db.internal", "10.1.2.3"),))
    assert result.exit_code == 0, out
    devices = sorted(line.split(":")[0].strip() for line in out.splitlines()
                     if ":" in line and line.split(":")[0].strip() in ("lo", "tap0", "eth0",
                                                                       "docker0"))
    assert devices == ["lo", "tap0"]
    assert ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            "127.0.1.1\tnetbox\n10.1.2.3\tdb.internal\n") in out
    assert net.resolv_conf("default").decode() in out
    assert f"inet {net.ADDRESS}/24" in out
    assert f"default via {net.GATEWAY} dev tap0" in out
    assert stack == "direct" or net._spares.ready is not spare  # the run took it


def named_namespace_mounted(path: str) -> bool:
    """Whether the host's mount table has a network namespace mounted at ``path``."""
    return any(line.split()[4] == path for line in Path("/proc/self/mountinfo").read_text()
               .splitlines())


def test_default_network_leaves_the_hosts_named_namespaces_mounted(
        rootfs: Path, stack: str, world: networld.World) -> None:
    # world's ip netns add made /run/netns a shared mount, as podman does too; every stack
    # started from here on (the run's, or the next prepared one) must leave it as it is
    assert named_namespace_mounted(world.path)
    assert run(rootfs, "true")[0].exit_code == 0
    if stack == "prepared":
        deadline = time.monotonic() + 30
        while net._spares.ready is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert net._spares.ready is not None, "no network namespace was prepared"
    assert named_namespace_mounted(world.path)


def test_default_network_does_not_reach_the_hosts_loopback(
        rootfs: Path, loopback_server: tuple[int, list[str]], stack: str) -> None:
    """Neither through the gateway, 0.0.0.0 nor packets routed for 127.0.0.1 out of tap0
    (what root with CAP_NET_ADMIN in the run can arrange: ``RUN --security=insecure``, as
    the hardened sandbox's default capabilities cannot change routes)."""
    port, seen = loopback_server
    result, out = run(rootfs, (
        f"for a in {net.GATEWAY} 0.0.0.0 127.0.0.1; do nc -w 3 $a {port} && echo reached-$a; "
        "done; "
        "sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.tap0.route_localnet=1; "
        "ip route del local 127.0.0.0/8 dev lo table local; "
        "ip route del local 127.0.0.1 dev lo table local; "
        f"ip route add 127.0.0.1/32 via {net.GATEWAY} dev tap0 onlink && "
        "ip route get 127.0.0.1 | grep -q tap0 && echo routed; "
        f"nc -w 3 127.0.0.1 {port} && echo reached-routed; "
        f"ip route add 0.0.0.0/32 via {net.GATEWAY} dev tap0 onlink; "
        f"nc -w 3 0.0.0.0 {port} && echo reached-zero-routed; true"), security="insecure")
    assert result.exit_code == 0, out
    assert "routed" in out.split()  # the attempt really left through tap0
    assert "reached" not in out and "secret" not in out
    assert seen == []


def test_none_network_has_only_loopback_and_no_nameserver(rootfs: Path) -> None:
    result, out = run(rootfs, "ls /sys/class/net; echo --; cat /etc/resolv.conf",
                      network="none", extra_hosts=(ExtraHost("db", "10.1.2.3"),))
    assert result.exit_code == 0, out
    assert out.split("--")[0].split() == ["lo"]
    assert out.split("--")[1].strip() == ""
    result, out = run(rootfs, "cat /etc/hosts", network="none",
                      extra_hosts=(ExtraHost("db", "10.1.2.3"),))
    assert out.endswith("10.1.2.3\tdb\n")


def _own_store(base_images: BaseImages, tmp_path: Path) -> Path:
    """A store of the test's own holding the base images (the session's store may hold
    snapshots of other tests, whiteout devices among them, that a tree copy cannot open)."""
    root = tmp_path / "root"
    load_into_pybuild(base_images, root, pybuild_command())
    return root


def test_default_network_resolves_and_fetches_from_the_debian_archive(
        base_images: BaseImages, tmp_path: Path) -> None:
    """apt's own downloader, through the host's nameservers and slirp4netns (the Debian
    archive is the one outside server the test machines reach)."""
    require("slirp4netns")
    root = _own_store(base_images, tmp_path)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    rc = build(root, ctx, (
        "FROM debian:bookworm\n"
        "RUN getent hosts deb.debian.org && ls /sys/class/net | sort | tr '\\n' ' ' > /net && "
        "/usr/lib/apt/apt-helper download-file "
        "http://deb.debian.org/debian/dists/bookworm/Release.gpg /release.gpg\n"),
        "-t", "net-apt:1", "--no-cache")
    assert rc == 0
    with image_file(root, "net-apt:1") as tree:
        assert (tree / "net").read_text() == "lo tap0 "
        assert (tree / "release.gpg").read_bytes().startswith(b"-----BEGIN PGP SIGNATURE")


# --- a world of the test's own --------------------------------------------------------------

def test_run_reaches_a_non_loopback_server_and_resolves_names(
        world: networld.World, store_root: Path) -> None:
    result = in_world(world, "--root", str(store_root), "run", "--add-host",
                      f"db.internal:{networld.PEER}", "busybox:latest", "sh", "-c",
                      f"nc -w 5 {networld.ADDRESS} {world.port}; "
                      f"nslookup {networld.NAME}; "
                      f"nc -w 3 {net.GATEWAY} {world.loopback_port} && echo reached-gateway; "
                      f"nc -w 3 127.0.0.1 {world.loopback_port} && echo reached-loopback; "
                      "cat /etc/hosts /etc/resolv.conf; ls /sys/class/net")
    out = result.stdout
    assert networld.GREETING.decode() in out, (out, result.stderr)
    assert f"Name:\t{networld.NAME}\nAddress: {networld.ADDRESS}" in out
    assert "reached" not in out and "loopback" not in out.replace("ip6-loopback", "")
    assert f"{networld.PEER}\tdb.internal\n" in out
    assert f"nameserver {networld.ADDRESS}\n" in out
    assert out.split()[-2:] == ["lo", "tap0"]
    assert world.dns_queries and set(world.seen) == {networld.ADDRESS}


def test_build_reaches_the_world_by_name(world: networld.World, base_images: BaseImages,
                                         tmp_path: Path) -> None:
    """glibc's resolver (as apt uses it) on the default network, and bash's /dev/tcp."""
    root = _own_store(base_images, tmp_path)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM debian:bookworm\n"
        'SHELL ["/bin/bash", "-c"]\n'
        f"RUN getent hosts {networld.NAME} > /resolved && "
        f"exec 3<>/dev/tcp/{networld.NAME}/{world.port} && cat <&3 > /greeting && "
        f"(timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/{world.loopback_port}' && "
        "echo reached > /loopback || true) && getent hosts gw.internal > /added\n")
    result = in_world(world, "--root", str(root), "build", "--progress=plain", "--no-cache",
                      "--add-host", f"gw.internal:{networld.PEER}", "-t", "net-world:1",
                      str(ctx))
    assert result.returncode == 0, result.stderr
    with image_file(root, "net-world:1") as tree:
        assert (tree / "resolved").read_text().split() == [networld.ADDRESS, networld.NAME]
        assert (tree / "greeting").read_bytes() == networld.GREETING
        assert not (tree / "loopback").exists()
        assert (tree / "added").read_text().split() == [networld.PEER, "gw.internal"]


def test_host_gateway_without_a_default_route_is_an_error(world: networld.World,
                                                          store_root: Path) -> None:
    result = in_world(world, "--root", str(store_root), "run", "--add-host",
                      "gw:host-gateway", "busybox:latest", "true")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].endswith(
        "--add-host gw:host-gateway: this host has no default route, so no address for "
        "host-gateway; give an IP address instead")


# --- the host network and its entitlement ---------------------------------------------------

def test_host_network_needs_the_entitlement(store_root: Path, tmp_path: Path,
                                           capfd: pytest.CaptureFixture[str]) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    assert build(store_root, ctx, "FROM busybox\nRUN --network=host true\n") == 1
    err = capfd.readouterr().err
    assert ("Dockerfile:2: RUN --network=host needs the network.host entitlement: pass "
            "--allow network.host") in err
    assert build(store_root, ctx, "FROM busybox\nRUN true\n", "--network=host") == 1
    assert "--network=host needs the network.host entitlement: pass --allow network.host" \
        in capfd.readouterr().err
    assert main(["--root", str(store_root), "run", "--network", "host", "busybox:latest",
                 "true"]) == 1
    assert "--network=host needs the network.host entitlement" in capfd.readouterr().err
    host = sorted(Path("/sys/class/net").iterdir())
    assert build(store_root, ctx, "FROM busybox\nRUN --network=host ls /sys/class/net > /n\n",
                 "--allow", "network.host", "-t", "net-host:1") == 0
    capfd.readouterr()
    assert main(["--root", str(store_root), "run", "--allow", "network.host", "--network",
                 "host", "net-host:1", "cat", "/n"]) == 0
    assert capfd.readouterr().out.split() == [p.name for p in host]


def test_a_prepared_namespace_is_out_of_a_runs_reach(rootfs: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The namespace prepared for a later run is not among the descriptors a run's PID 1
    inherits (a root command could open /proc/1/fd/N and join it)."""
    require("slirp4netns")
    for _ in range(2):
        assert run(rootfs, "true")[0].exit_code == 0
    deadline = time.monotonic() + 30
    while net._spares.ready is None and time.monotonic() < deadline:
        time.sleep(0.05)
    ready = net._spares.ready
    assert ready is not None, "no network namespace was prepared"
    spare = f"net:[{os.fstat(ready[0]).st_ino}]"
    monkeypatch.setattr(net, "PREPARE_AHEAD", False)  # this run leaves it where it is
    result, out = run(rootfs, "ls -l /proc/1/fd/ /proc/self/ns/net")
    assert result.exit_code == 0, out
    assert net._spares.ready is ready
    assert "net:[" in out and spare not in out


def test_a_namespace_is_reused_only_after_a_run_that_could_not_change_it(
        rootfs: Path) -> None:
    """As BuildKit's pool: the next run takes the namespace of a finished run without
    CAP_NET_ADMIN (no process of it is left); never the one of an insecure run."""
    def namespace(**kwargs: object) -> str:
        result, out = run(rootfs, "readlink /proc/self/ns/net", **kwargs)
        assert result.exit_code == 0, out
        return out.strip()

    first = namespace()
    again = namespace()
    assert again == first
    insecure = namespace(security="insecure")
    assert insecure == first  # it took the free namespace, and spoilt it
    after = namespace()
    assert after != insecure
    result, out = run(rootfs, "ip addr add 10.9.9.9/32 dev lo", security="insecure")
    assert result.exit_code == 0, out
    result, out = run(rootfs, "ip -4 addr show dev lo")
    assert "10.9.9.9" not in out
