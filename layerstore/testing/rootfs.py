"""Base root filesystems made locally, for tests, benchmarks and the examples.

No image is pulled from the internet: a busybox rootfs comes from Debian's ``busybox-static``
and a Debian rootfs from ``debootstrap --variant=minbase``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from layerstore.errors import NotFound

BUSYBOX = Path("/bin/busybox")

_PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
_GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
tty:x:5:
staff:x:50:
nogroup:x:65534:
"""


def make_busybox_rootfs(dest: Path, busybox: Path = BUSYBOX) -> Path:
    """A minimal rootfs in ``dest``: a static busybox with a link for every applet,
    ``/etc/passwd``, ``/etc/group`` and the usual empty directories."""
    if not busybox.exists():
        raise NotFound(f"{busybox} is missing: install Debian's busybox-static")
    dest.mkdir(parents=True, exist_ok=True)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "var", "home",
              "proc", "sys", "dev"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    os.chmod(dest / "root", 0o700)
    shutil.copy2(busybox, dest / "bin/busybox")
    os.chmod(dest / "bin/busybox", 0o755)
    applets = subprocess.run([str(busybox), "--list-full"], check=True, capture_output=True,
                             text=True).stdout.split()
    for applet in applets:
        link = dest / applet
        if applet == "bin/busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    (dest / "etc/passwd").write_text(_PASSWD)
    (dest / "etc/group").write_text(_GROUP)
    (dest / "etc/hostname").write_text("busybox\n")
    return dest


def make_debian_rootfs(dest: Path, suite: str = "bookworm",
                       mirror: str = "http://deb.debian.org/debian") -> Path:
    """A Debian ``minbase`` rootfs in ``dest`` made by debootstrap (needs the Debian archive)."""
    if shutil.which("debootstrap") is None:
        raise NotFound("debootstrap is missing: apt-get install debootstrap")
    subprocess.run(["debootstrap", "--variant=minbase", suite, str(dest), mirror], check=True,
                   stdout=subprocess.DEVNULL)
    return dest
