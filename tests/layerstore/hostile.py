"""A corpus of hostile (or merely strange) layer tars for the extraction tests.

Each case is built in memory with :mod:`tarfile`, which writes whatever names and link
targets it is given. ``outside`` is a real directory next to the extraction root holding
sentinel files; several cases aim symlinks and hardlinks at it.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REJECT = "reject"
CONTAIN = "contain"


@dataclass(frozen=True)
class Case:
    """One hostile tar: ``expect`` is REJECT (extraction must raise one of ``errors`` with
    ``match`` in its message) or CONTAIN (extraction succeeds inside the root and
    ``check(root, overlay)`` holds). ``before(root)`` prepares the root."""

    name: str
    data: bytes
    expect: str
    errors: tuple[str, ...] = ("UnsafeLayer", "InvalidArgument")
    match: str = ""
    check: Callable[[Path, bool], None] | None = field(default=None, compare=False)
    before: Callable[[Path], None] | None = field(default=None, compare=False)


def _info(name: str, kind: bytes = tarfile.REGTYPE, *, link: str = "", mode: int = 0o644,
          size: int = 0, devmajor: int = 0, devminor: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = mode
    info.size = size
    info.mtime = 1_600_000_000
    info.devmajor = devmajor
    info.devminor = devminor
    return info


def build(*entries: tuple, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar of ``entries``: ``("file", name, data)``, ``("dir", name)``,
    ``("symlink", name, target)``, ``("hardlink", name, target)``,
    ``("char"|"block", name, major, minor)``, ``("fifo", name)``."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for kind, name, *rest in entries:
            if kind == "file":
                data = rest[0] if rest else b"evil\n"
                tar.addfile(_info(name, size=len(data)), io.BytesIO(data))
            elif kind == "dir":
                tar.addfile(_info(name, tarfile.DIRTYPE, mode=0o755))
            elif kind == "symlink":
                tar.addfile(_info(name, tarfile.SYMTYPE, link=rest[0], mode=0o777))
            elif kind == "hardlink":
                tar.addfile(_info(name, tarfile.LNKTYPE, link=rest[0]))
            elif kind in ("char", "block"):
                flag = tarfile.CHRTYPE if kind == "char" else tarfile.BLKTYPE
                tar.addfile(_info(name, flag, devmajor=rest[0], devminor=rest[1]))
            elif kind == "fifo":
                tar.addfile(_info(name, tarfile.FIFOTYPE))
            else:
                raise ValueError(kind)
    return out.getvalue()


Check = Callable[[Path, bool], None]


def _exists(*rel: str) -> Check:
    def check(root: Path, overlay: bool) -> None:
        for r in rel:
            assert os.path.lexists(root / r), f"{r} missing in root"
    return check


def _absent(*rel: str) -> Check:
    """Gone (or, when applied to an overlay upperdir, an overlay whiteout)."""
    def check(root: Path, overlay: bool) -> None:
        for r in rel:
            if overlay:
                st = os.lstat(root / r)
                assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, f"{r} not a whiteout"
            else:
                assert not os.path.lexists(root / r), f"{r} present"
    return check


def _not_symlink(rel: str) -> Check:
    def check(root: Path, overlay: bool) -> None:
        assert not (root / rel).is_symlink(), f"{rel} is still a symlink"
    return check


def _all(*checks: Check) -> Check:
    def check(root: Path, overlay: bool) -> None:
        for c in checks:
            c(root, overlay)
    return check


def _is_symlink(rel: str, target: str) -> Check:
    def check(root: Path, overlay: bool) -> None:
        assert os.readlink(root / rel) == target
    return check


def _devices(root: Path, overlay: bool) -> None:
    st = os.lstat(root / "dev/null")
    assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
    st = os.lstat(root / "dev/loop0")
    assert stat.S_ISBLK(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (7, 0)
    assert stat.S_ISFIFO(os.lstat(root / "dev/fifo").st_mode)


def _truncated() -> bytes:
    data = build(("file", "big", b"x" * 5000))
    return data[:1024]


def _bad_checksum() -> bytes:
    data = bytearray(build(("file", "f", b"data")))
    data[0:1] = b"g"
    return bytes(data)


def _pre_symlink(target: str) -> Callable[[Path], None]:
    def before(root: Path) -> None:
        (root / "pre").symlink_to(target)
    return before


def cases(outside: Path) -> list[Case]:
    """The corpus; ``outside`` is a directory next to the root holding ``sentinel``."""
    out = str(outside)
    sentinel = f"{out}/sentinel"
    deep = "/".join(["d"] * 1500) + "/f"
    return [
        Case("dotdot", build(("file", "../evil")), REJECT, match="climbs above the root"),
        Case("dotdot-nested", build(("file", "a/../../x")), REJECT, match="climbs above"),
        Case("dotdot-deep", build(("dir", "a"), ("file", "a/../../outside/evil")), REJECT),
        Case("absolute", build(("file", "/etc/x")), CONTAIN, check=_exists("etc/x")),
        Case("absolute-outside-path", build(("file", f"{out}/evil")), CONTAIN,
             check=_exists(f"{out.lstrip('/')}/evil")),
        Case("symlink-to-root-then-write", build(("symlink", "link", "/"),
                                                 ("file", "link/evil")),
             CONTAIN, check=_exists("evil")),
        Case("symlink-dotdot-then-write", build(("symlink", "link", "../.."),
                                                ("file", "link/evil")),
             CONTAIN, check=_exists("evil")),
        Case("symlink-relative-outside-then-write",
             build(("symlink", "link", "../../../../../../../../" + out.lstrip("/")),
                   ("file", "link/evil")),
             CONTAIN, check=_exists(f"{out.lstrip('/')}/evil")),
        Case("symlink-abs-outside-then-write", build(("symlink", "out", out),
                                                     ("file", "out/evil")),
             CONTAIN, check=_exists(f"{out.lstrip('/')}/evil")),
        Case("symlink-abs-outside-then-hardlink",
             build(("symlink", "out", out), ("hardlink", "hl", "out/sentinel")),
             REJECT, match="does not exist"),
        Case("symlink-etc-to-itself-then-hardlink-passwd",
             build(("symlink", "etc", "/etc"), ("hardlink", "hl", "etc/passwd")),
             REJECT, match="too many levels of symbolic links"),
        Case("symlink-host-etc-then-hardlink-passwd",
             build(("symlink", "hostetc", "/etc"), ("hardlink", "hl", "hostetc/passwd")),
             REJECT, match="does not exist"),
        Case("hardlink-dotdot", build(("hardlink", "hl", "../outside/sentinel")), REJECT,
             match="climbs above"),
        Case("hardlink-etc-passwd", build(("hardlink", "hl", "/etc/passwd")), REJECT),
        Case("hardlink-etc-passwd-in-layer",
             build(("file", "etc/passwd", b"root:x:0:0::/:/bin/sh\n"),
                   ("hardlink", "hl", "/etc/passwd")),
             CONTAIN, check=_exists("hl", "etc/passwd")),
        Case("hardlink-to-symlink-outside",
             build(("symlink", "s", "/etc/passwd"), ("hardlink", "h", "s"),
                   ("file", "h", b"overwritten\n")),
             CONTAIN, check=_is_symlink("s", "/etc/passwd")),
        Case("hardlink-to-dir", build(("dir", "d"), ("hardlink", "h", "d")), REJECT),
        Case("symlink-loop", build(("symlink", "a", "b"), ("symlink", "b", "a"),
                                   ("file", "a/x")),
             REJECT, match="too many levels of symbolic links"),
        Case("symlink-self-loop", build(("symlink", "a", "a/b"), ("file", "a/x")), REJECT),
        Case("whiteout-dotdot", build(("file", ".wh...")), REJECT, match="invalid whiteout"),
        Case("whiteout-dotdot-subdir", build(("dir", "a"), ("file", "a/.wh...")), REJECT),
        Case("whiteout-dot", build(("file", ".wh..")), REJECT, match="invalid whiteout"),
        Case("whiteout-empty", build(("file", ".wh.")), REJECT, match="invalid whiteout"),
        Case("whiteout-through-symlink-outside",
             build(("symlink", "out", out), ("file", "out/.wh.sentinel")), CONTAIN),
        Case("opaque-through-symlink-outside",
             build(("symlink", "out", out), ("file", "out/.wh..wh..opq")), CONTAIN),
        Case("opaque-root", build(("file", "keep"), ("file", ".wh..wh..opq")), CONTAIN,
             check=_exists("keep")),
        Case("devices-kept", build(("char", "dev/null", 1, 3), ("block", "dev/loop0", 7, 0),
                                   ("fifo", "dev/fifo")), CONTAIN, check=_devices),
        Case("path-longer-than-path-max", build(("file", "/".join(["p" * 200] * 21))), REJECT,
             match="PATH_MAX"),
        Case("component-longer-than-name-max", build(("file", "n" * 300)), REJECT,
             match="NAME_MAX"),
        Case("deeply-nested", build(("file", deep)), CONTAIN, check=_exists(deep)),
        Case("symlink-dir-outside-then-same-name-dir",
             build(("symlink", "x", out), ("dir", "x"), ("file", "x/evil")),
             CONTAIN, check=_exists("x/evil")),
        Case("symlink-dir-outside-then-file-inside",
             build(("symlink", "x", out), ("file", "x/sentinel", b"pwned\n")),
             CONTAIN, check=_exists(f"{out.lstrip('/')}/sentinel")),
        Case("file-over-existing-symlink-outside", build(("file", "pre", b"new\n")), CONTAIN,
             before=_pre_symlink(sentinel),
             check=_all(_exists("pre"), _not_symlink("pre"))),
        Case("write-through-existing-symlink-outside", build(("file", "pre/evil")), CONTAIN,
             before=_pre_symlink(out), check=_exists(f"{out.lstrip('/')}/evil")),
        Case("whiteout-existing-symlink-outside", build(("file", ".wh.pre")), CONTAIN,
             before=_pre_symlink(out), check=_absent("pre")),
        Case("pax-path-dotdot", build(("file", "../" + "y" * 120)), REJECT,
             match="climbs above"),
        Case("root-as-file", build(("file", "./")), REJECT, match="names the root"),
        Case("gnu-longname-dotdot", build(("file", "../" * 40 + "x" * 10),
                                          fmt=tarfile.GNU_FORMAT), REJECT),
        Case("truncated", _truncated(), REJECT, errors=("InvalidArgument",),
             match="unexpected end of data"),
        Case("bad-checksum", _bad_checksum(), REJECT, errors=("InvalidArgument",),
             match="checksum"),
        Case("not-a-tar", b"hello world, this is not a tar archive\n" * 20, REJECT,
             errors=("InvalidArgument",)),
        Case("setuid-and-ids-kept", _setuid(), CONTAIN, check=_setuid_check),
        Case("pax-uid-too-large", _pax(("file", "f"), {"uid": str(2**40)}), REJECT,
             match="'f'"),
        Case("pax-dir-mtime-too-large", _pax(("dir", "d"), {"mtime": "1" + "0" * 30}), REJECT,
             match="cannot set mtime"),
        Case("pax-nul-in-linkpath", _pax(("symlink", "s", "x"), {"linkpath": "a\x00/etc"}),
             REJECT, errors=("InvalidArgument",), match="NUL byte"),
        Case("sparse-entry", _typeflag(b"S"), REJECT, errors=("InvalidArgument",),
             match="sparse file"),
        Case("unknown-entry-type", _typeflag(b"Z"), REJECT, errors=("InvalidArgument",),
             match="not supported"),
        Case("nul-in-name", _nul_name(), CONTAIN, check=_exists("a")),
    ]


def _setuid() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = _info("bin/su", mode=0o4755, size=3)
        info.uid, info.gid = 12345, 54321
        tar.addfile(info, io.BytesIO(b"su\n"))
        info = _info("tmp", tarfile.DIRTYPE, mode=0o1777)
        info.uid = 4_000_000_000
        tar.addfile(info)
    return out.getvalue()


def _setuid_check(root: Path, overlay: bool) -> None:
    st = os.lstat(root / "bin/su")
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o4755, 12345, 54321)
    st = os.lstat(root / "tmp")
    assert (st.st_mode & 0o7777, st.st_uid) == (0o1777, 4_000_000_000)


def _nul_name() -> bytes:
    # A ustar name field is NUL-terminated: "a\0../../evil" names "a".
    data = bytearray(build(("file", "a" + "_" * 11 + "/../../evil"), fmt=tarfile.USTAR_FORMAT))
    data[1] = 0
    checksum = sum(data[:148]) + 256 + sum(data[156:512])
    data[148:156] = b"%06o\x00 " % checksum
    return bytes(data)


def _pax(entry: tuple, records: dict[str, str]) -> bytes:
    """A one-entry PAX tar whose extended header carries ``records``."""
    kind, name, *rest = entry
    flag = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE}[kind]
    info = _info(name, flag, link=rest[0] if rest else "")
    info.pax_headers = dict(records)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b""))
    return out.getvalue()


def _typeflag(flag: bytes) -> bytes:
    """A one-entry tar whose header has typeflag ``flag`` (checksum fixed up)."""
    data = bytearray(build(("file", "odd", b"")))
    data[156:157] = flag
    data[148:156] = b"        "
    data[148:156] = b"%06o\x00 " % sum(data[:512])
    return bytes(data)
