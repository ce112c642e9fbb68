"""Platform strings as containerd (and so BuildKit) normalises them, the binfmt_misc status
files pybuild reads, and the merged graph of a multi-platform build."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import BuildError
from builder.platforms import format_platform, is_native, parse_platforms, qemu_arch
from builder.platforms_outputs import platform_dir
from builder.platforms_qemu import handler
from layerstore.assembly import host_architecture
from layerstore.oci import Platform


@pytest.mark.parametrize(("text", "expected"), [
    ("linux/amd64", ["linux/amd64"]),
    ("linux/x86_64", ["linux/amd64"]),
    ("Linux/AARCH64", ["linux/arm64"]),
    ("linux/arm64/v8", ["linux/arm64"]),
    ("linux/arm", ["linux/arm/v7"]),
    ("linux/arm/7", ["linux/arm/v7"]),
    ("linux/armhf", ["linux/arm/v7"]),
    ("linux/armel", ["linux/arm/v6"]),
    ("linux/i386", ["linux/386"]),
    ("linux/amd64, linux/arm64,linux/amd64", ["linux/amd64", "linux/arm64"]),
    ("linux/arm64,linux/aarch64,linux/arm64/v8", ["linux/arm64"]),
])
def test_platform_lists_are_normalised(text: str, expected: list[str]) -> None:
    assert [format_platform(p) for p in parse_platforms(text)] == expected


@pytest.mark.parametrize(("text", "message"), [
    ("linux", "--platform linux: invalid platform 'linux': expected os/arch[/variant]"),
    ("linux/arm64/v8/x", "--platform linux/arm64/v8/x: invalid platform"),
    ("linux/amd64,", "--platform linux/amd64,: invalid platform 'linux/amd64,': an empty entry"),
    ("darwin/arm64", "--platform darwin/arm64: cannot build for darwin/arm64: only linux"),
    ("linux/m68k", "--platform linux/m68k: cannot build for linux/m68k: unknown architecture "
     "'m68k'"),
    ("", "--platform : invalid platform '': no platform given"),
])
def test_bad_platforms_name_the_flag(text: str, message: str) -> None:
    with pytest.raises(BuildError) as info:
        parse_platforms(text)
    assert str(info.value).startswith(message)


def test_native_and_emulated_platforms() -> None:
    host = host_architecture()
    assert is_native(Platform(os="linux", architecture=host))
    foreign = "arm64" if host == "amd64" else "amd64"
    assert not is_native(Platform(os="linux", architecture=foreign))
    assert qemu_arch(Platform(os="linux", architecture="arm64")) == "aarch64"
    assert qemu_arch(Platform(os="linux", architecture="mips64le")) == "mips64el"
    assert platform_dir(Platform(os="linux", architecture="arm", variant="v7")) == \
        "linux_arm_v7"


def test_binfmt_status_files_are_read(tmp_path: Path) -> None:
    (tmp_path / "qemu-aarch64").write_text(
        "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\n"
        "offset 0\nmagic 7f454c46\nmask ffffffff\n")
    (tmp_path / "qemu-arm").write_text("disabled\ninterpreter /usr/bin/qemu-arm\nflags: \n")
    found = handler("qemu-aarch64", tmp_path)
    assert found is not None and found.enabled and found.flags == "POF"
    assert found.interpreter == "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"
    arm = handler("qemu-arm", tmp_path)
    assert arm is not None and not arm.enabled and "F" not in arm.flags
    assert handler("qemu-riscv64", tmp_path) is None
