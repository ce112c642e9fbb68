"""USER and --chown resolution against an image's /etc/passwd and /etc/group; --chmod."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.errors import DockerfileError
from builder.fileops import ResolvedUser, parse_chmod, resolve_chown, resolve_user

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin

app:x:1000:1001:App User:/home/app:/bin/sh
  dup:x:1500:1500::/:/bin/sh
app:x:9999:9999:second entry loses:/:/bin/sh
broken:x:notanumber:7::/:/bin/sh
"""
GROUP = """\
root:x:0:
daemon:x:1:
appgrp:x:1001:
staff:x:50:app,dup
docker:x:999:other,app
empty:x:3000:
"""


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "real-etc").mkdir(parents=True)
    (root / "real-etc/passwd").write_text(PASSWD)
    (root / "real-etc/group").write_text(GROUP)
    os.symlink("/real-etc", root / "etc")  # read through symlinks inside the root
    return root


@pytest.mark.parametrize(("spec", "expected"), [
    ("", ResolvedUser(0, 0)),
    ("root", ResolvedUser(0, 0)),
    ("app", ResolvedUser(1000, 1001, (50, 999))),
    ("1000", ResolvedUser(1000, 1001, (50, 999))),
    ("dup", ResolvedUser(1500, 1500, (50,))),
    ("4242", ResolvedUser(4242, 0)),
    ("app:staff", ResolvedUser(1000, 50)),
    ("app:4242", ResolvedUser(1000, 4242)),
    ("4242:4343", ResolvedUser(4242, 4343)),
    ("4242:docker", ResolvedUser(4242, 999)),
    ("1000:", ResolvedUser(1000, 1001, (50, 999))),
    ("root:root", ResolvedUser(0, 0)),
    ("broken", ResolvedUser(0, 7)),
])
def test_resolve_user(rootfs: Path, spec: str, expected: ResolvedUser) -> None:
    assert resolve_user(rootfs, spec) == expected


def test_resolve_user_errors(rootfs: Path) -> None:
    with pytest.raises(DockerfileError, match=r"^Dockerfile: unable to find user nosuch: "
                                              "no matching entries in passwd file$"):
        resolve_user(rootfs, "nosuch")
    with pytest.raises(DockerfileError, match="unable to find group nogroup: no matching "
                                              "entries in group file"):
        resolve_user(rootfs, "app:nogroup")
    with pytest.raises(DockerfileError, match="must be in range"):
        resolve_user(rootfs, "-5")


def test_resolve_user_without_files(tmp_path: Path) -> None:
    assert resolve_user(tmp_path, "1234") == ResolvedUser(1234, 0)
    assert resolve_user(tmp_path, "1234:55") == ResolvedUser(1234, 55)
    with pytest.raises(DockerfileError, match="unable to find user app"):
        resolve_user(tmp_path, "app")


def test_passwd_outside_root_is_not_read(tmp_path: Path) -> None:
    host_etc = tmp_path / "host-etc"
    host_etc.mkdir()
    (host_etc / "passwd").write_text("hostonly:x:77:77::/:/bin/sh\n")
    root = tmp_path / "rootfs"
    root.mkdir()
    os.symlink(os.fspath(host_etc), root / "etc")  # means <root>/<host_etc> inside the image
    with pytest.raises(DockerfileError, match="unable to find user hostonly"):
        resolve_user(root, "hostonly")
    os.unlink(root / "etc")
    os.symlink("/etc", root / "etc")
    with pytest.raises(DockerfileError, match="cannot read /etc/passwd of the image: too many"):
        resolve_user(root, "hostonly")


@pytest.mark.parametrize(("spec", "expected"), [
    ("app", (1000, 1001)), ("1000", (1000, 1000)), ("4242", (4242, 4242)),
    ("root", (0, 0)), ("app:staff", (1000, 50)), ("app:77", (1000, 77)),
    ("55:docker", (55, 999)), ("10:11", (10, 11)), ("app:root", (1000, 0)),
    (":staff", (0, 50)), ("app:", (1000, 0)),
])
def test_resolve_chown(rootfs: Path, spec: str, expected: tuple[int, int]) -> None:
    assert resolve_chown(rootfs, spec) == expected


def test_resolve_chown_errors(rootfs: Path, tmp_path: Path) -> None:
    with pytest.raises(DockerfileError, match="unable to find user nosuch"):
        resolve_chown(rootfs, "nosuch")
    with pytest.raises(DockerfileError, match="unable to find group nogrp"):
        resolve_chown(rootfs, "app:nogrp")
    with pytest.raises(DockerfileError, match="unable to find user app"):
        resolve_chown(tmp_path, "app")
    with pytest.raises(DockerfileError, match="must be in range"):
        resolve_chown(rootfs, "-1")


# -- --chmod -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "mode", "is_dir", "expected"), [
    ("755", 0o600, False, 0o755), ("0644", 0o4755, False, 0o644),
    ("4755", 0o600, False, 0o4755), ("1777", 0o755, True, 0o1777),
    ("+x", 0o644, False, 0o755), ("u+x", 0o644, False, 0o744),
    ("go-w", 0o666, False, 0o644), ("a=r,u+w", 0o777, False, 0o644),
    ("u=rwX,go=rX", 0o700, True, 0o755), ("u=rwX,go=rX", 0o744, False, 0o755),
    ("u=rwX,go=rX", 0o664, False, 0o644), ("a+X", 0o500, True, 0o511),
    ("a+X", 0o600, False, 0o600), ("g=u", 0o750, False, 0o770),
    ("o=g-w", 0o775, False, 0o775), ("u+s,g+s", 0o755, False, 0o6755),
    ("+t", 0o755, True, 0o1755), ("o-rwx,g+x", 0o644, False, 0o650),
    ("u=rwx,g=,o=", 0o644, False, 0o700), ("u+rw,g+r,o-x,o+w", 0o644, False, 0o646),
    ("u-w+x", 0o644, False, 0o544), ("=", 0o755, False, 0o000), ("-X", 0o755, False, 0o644),
    ("u=rw,go=u-w", 0o777, False, 0o644),
])
def test_chmod(text: str, mode: int, is_dir: bool, expected: int) -> None:
    assert parse_chmod(text).apply(mode, is_dir=is_dir) == expected


@pytest.mark.parametrize("text", ["", "8", "0o755", "17777", "u+y", "x", "u", "u+x,",
                                  ",u+x", "+644", "u!x", "a=r,,u+w"])
def test_chmod_invalid(text: str) -> None:
    with pytest.raises(DockerfileError, match="invalid chmod parameter"):
        parse_chmod(text)
