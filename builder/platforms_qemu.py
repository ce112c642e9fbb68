"""Emulation of foreign architectures: Debian's ``qemu-user-static`` through binfmt_misc.

A RUN step for a platform this machine does not run natively executes its programs under
``qemu-<arch>-static``. The kernel starts the emulator itself, through a binfmt_misc handler
that matches the program's ELF header; the handler must carry the ``F`` (fix binary) flag so
the kernel opens the emulator when the handler is registered, and it then works inside the
RUN step's root, where no emulator binary exists.

:func:`ensure_emulation` checks for the emulator and the handler and registers the handler
when it is missing, from the ``/usr/lib/binfmt.d/qemu-<arch>.conf`` that qemu-user-static
installs (the ``F`` flag added when the file lacks it), after mounting binfmt_misc when it is
not mounted. A handler is machine-wide and stays registered: later builds, and Docker's
``--platform`` runs, use it too.
"""

from __future__ import annotations

import errno
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from builder.platforms import PlatformError, format_platform, is_native, qemu_arch
from layerstore import syscalls
from layerstore.oci import Platform

__all__ = ["BINFMT_DIR", "EmulationError", "Handler", "emulator_path", "ensure_emulation",
           "handler"]

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
BINFMT_CONF_DIRS = (Path("/usr/lib/binfmt.d"), Path("/etc/binfmt.d"))
QEMU_DIR = Path("/usr/bin")
PACKAGE = "qemu-user-static"

_lock = threading.Lock()
_ready: set[str] = set()


class EmulationError(PlatformError):
    """A foreign platform's programs cannot be run: no emulator, or no way to register it."""


@dataclass(frozen=True)
class Handler:
    """A registered binfmt_misc handler, as its file in ``binfmt_misc`` shows it."""

    name: str
    enabled: bool
    interpreter: str
    flags: str


def emulator_path(platform: Platform) -> Path:
    """Where qemu-user-static installs the emulator of ``platform``."""
    return QEMU_DIR / f"qemu-{qemu_arch(platform)}-static"


def handler(name: str, directory: Path = BINFMT_DIR) -> Handler | None:
    """The handler registered as ``name``; None when there is none."""
    try:
        text = (directory / name).read_text()
    except FileNotFoundError:
        return None
    fields: dict[str, str] = {}
    enabled = False
    for line in text.splitlines():
        if line.strip() == "enabled":
            enabled = True
        key, sep, value = line.partition(" ")
        if sep:
            fields[key] = value.strip()
    return Handler(name, enabled, fields.get("interpreter", ""), fields.get("flags:", ""))


def ensure_emulation(platform: Platform) -> None:
    """Make sure RUN steps of ``platform`` can execute here; raise :class:`EmulationError`
    saying what is missing and how to fix it. Does nothing for a native platform."""
    if is_native(platform):
        return
    name = f"qemu-{qemu_arch(platform)}"
    with _lock:
        if name in _ready and (BINFMT_DIR / name).exists():
            return
        _ensure(platform, name)
        _ready.add(name)


def _ensure(platform: Platform, name: str) -> None:
    shown = format_platform(platform)
    emulator = emulator_path(platform)
    if not os.access(emulator, os.X_OK):
        raise EmulationError(f"RUN for {shown} needs an emulator: {emulator} is missing "
                             f"(apt-get install {PACKAGE})")
    _mount_binfmt()
    found = handler(name)
    if found is None:
        _register(platform, name)
        found = handler(name)
        if found is None:
            raise EmulationError(f"RUN for {shown}: registering the binfmt_misc handler "
                                 f"{name} did not take effect")
    if not found.enabled:
        raise EmulationError(f"RUN for {shown}: the binfmt_misc handler {name} is disabled "
                             f"(enable it: echo 1 > {BINFMT_DIR / name})")
    if "F" not in found.flags:
        raise EmulationError(
            f"RUN for {shown}: the binfmt_misc handler {name} is registered without the F "
            f"flag, so its emulator {found.interpreter} cannot start inside a build's root "
            f"(remove it with: echo -1 > {BINFMT_DIR / name}; pybuild then registers it "
            "with F)")


def _mount_binfmt() -> None:
    if (BINFMT_DIR / "register").exists():
        return
    try:
        syscalls.mount("binfmt_misc", BINFMT_DIR, "binfmt_misc",
                       syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
    except OSError as exc:
        if (BINFMT_DIR / "register").exists():  # another build mounted it meanwhile
            return
        raise EmulationError(f"binfmt_misc is not mounted at {BINFMT_DIR} and cannot be "
                             f"mounted ({exc.strerror}): run as root, or mount it with "
                             f"mount -t binfmt_misc binfmt_misc {BINFMT_DIR}") from None


def _registration(platform: Platform, name: str) -> str:
    """The register line of ``name``, from qemu-user-static's binfmt.d file, with ``F``."""
    for directory in BINFMT_CONF_DIRS:
        conf = directory / f"{name}.conf"
        try:
            line = conf.read_text().strip()
        except FileNotFoundError:
            continue
        fields = line.split(":")
        # :name:type:offset:magic:mask:interpreter:flags (magic and mask hold no raw ':')
        if len(fields) != 8 or fields[1] != name:
            raise EmulationError(f"{conf}: not a binfmt_misc registration for {name}")
        if "F" not in fields[7]:
            fields[7] += "F"
        return ":".join(fields)
    raise EmulationError(f"RUN for {format_platform(platform)}: no binfmt_misc registration "
                         f"{name}.conf in {', '.join(map(str, BINFMT_CONF_DIRS))} "
                         f"(apt-get install {PACKAGE})")


def _register(platform: Platform, name: str) -> None:
    line = _registration(platform, name)
    try:
        fd = os.open(BINFMT_DIR / "register", os.O_WRONLY)
    except OSError as exc:
        raise EmulationError(f"RUN for {format_platform(platform)}: cannot register the "
                             f"binfmt_misc handler {name} ({exc.strerror}): run as root") \
            from None
    try:
        os.write(fd, line.encode())
    except OSError as exc:
        if exc.errno != errno.EEXIST:  # another build registered it meanwhile
            raise EmulationError(f"RUN for {format_platform(platform)}: registering the "
                                 f"binfmt_misc handler {name} failed: {exc.strerror}") \
                from None
    finally:
        os.close(fd)
