"""Platforms: parsing ``--platform`` lists and ``FROM --platform``, normalising them as
containerd does, and telling which ones this machine runs natively.

A platform is ``os/arch[/variant]``. Names are normalised the way BuildKit (containerd's
``platforms`` package) normalises them: ``x86_64`` is ``amd64``, ``aarch64`` is ``arm64``,
``linux/arm64/v8`` is ``linux/arm64``, a bare ``linux/arm`` is ``linux/arm/v7``, ``armhf`` is
``arm/v7``. Only Linux platforms are built (RUN executes Linux programs), and only the
architectures listed in :data:`ARCHITECTURES` (those Debian's qemu-user-static emulates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from builder.errors import BuildError
from layerstore.assembly import host_architecture
from layerstore.oci import Platform

__all__ = ["ARCHITECTURES", "PlatformError", "format_platform", "host_platform", "is_native",
           "normalize", "parse_one", "parse_platforms", "qemu_arch"]

#: Architecture (GOARCH) → the name qemu-user-static gives the emulator (``qemu-<name>``).
ARCHITECTURES = {
    "amd64": "x86_64", "386": "i386", "arm64": "aarch64", "arm": "arm",
    "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "mips64le": "mips64el",
    "mips64": "mips64", "loong64": "loongarch64",
}

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386",
                 "i686": "386", "armhf": "arm", "armel": "arm"}
_ARCH_DEFAULT_VARIANT = {"armhf": "v7", "armel": "v6"}

#: What a host runs without emulation, besides its own architecture.
_NATIVE_EXTRA = {"amd64": ("386",)}


class PlatformError(BuildError):
    """A platform string that is malformed or names a platform that cannot be built."""


def normalize(platform: Platform) -> Platform:
    """``platform`` in containerd's normal form (see the module docstring)."""
    arch = platform.architecture.lower()
    variant = (platform.variant or "").lower() or _ARCH_DEFAULT_VARIANT.get(arch, "")
    arch = _ARCH_ALIASES.get(arch, arch)
    if arch == "arm64" and variant in ("8", "v8"):
        variant = ""
    elif arch == "arm":
        variant = variant or "v7"
        if variant.isdigit():
            variant = f"v{variant}"
    elif arch == "amd64" and variant == "v1":
        variant = ""
    return replace(platform, os=platform.os.lower(), architecture=arch, variant=variant or None)


def format_platform(platform: Platform) -> str:
    """``os/arch[/variant]``."""
    return "/".join(x for x in (platform.os, platform.architecture, platform.variant) if x)


def parse_one(text: str, where: str) -> Platform:
    """Parse and normalise one platform; ``where`` names the flag or instruction in errors
    (``--platform``, ``FROM --platform``)."""
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not all(p.strip() for p in parts):
        raise PlatformError(f"{where} {text}: invalid platform {text!r}: expected "
                            "os/arch[/variant] (e.g. linux/amd64, linux/arm64, linux/arm/v7)")
    platform = normalize(Platform(os=parts[0].strip(), architecture=parts[1].strip(),
                                  variant=parts[2].strip() if len(parts) == 3 else None))
    if platform.os != "linux":
        raise PlatformError(f"{where} {text}: cannot build for {format_platform(platform)}: "
                            "only linux images are built")
    if platform.architecture not in ARCHITECTURES:
        raise PlatformError(f"{where} {text}: cannot build for {format_platform(platform)}: "
                            f"unknown architecture {platform.architecture!r} "
                            f"(known: {', '.join(ARCHITECTURES)})")
    return platform


def parse_platforms(values: str | Sequence[str], where: str = "--platform"
                    ) -> tuple[Platform, ...]:
    """A comma-separated list (or several of them) as distinct platforms, in the order
    given; duplicates after normalisation are dropped, as buildx does."""
    items = [values] if isinstance(values, str) else list(values)
    out: list[Platform] = []
    for item in items:
        parts = item.split(",")
        if not any(p.strip() for p in parts):
            raise PlatformError(f"{where} {item}: invalid platform {item!r}: no platform given")
        for part in parts:
            if not part.strip():
                raise PlatformError(f"{where} {item}: invalid platform {item!r}: an empty entry "
                                    "in the list")
            platform = parse_one(part, where)
            if all(format_platform(p) != format_platform(platform) for p in out):
                out.append(platform)
    return tuple(out)


def host_platform() -> Platform:
    """The platform of this machine."""
    return Platform(os="linux", architecture=host_architecture())


def is_native(platform: Platform) -> bool:
    """Whether programs of ``platform`` run on this machine without emulation."""
    host = host_architecture()
    return platform.os == "linux" and (
        platform.architecture == host or platform.architecture in _NATIVE_EXTRA.get(host, ()))


def qemu_arch(platform: Platform) -> str:
    """qemu's name for the platform's architecture (``aarch64`` for arm64)."""
    try:
        return ARCHITECTURES[platform.architecture]
    except KeyError:
        raise PlatformError(f"no emulator is known for {format_platform(platform)}") from None
