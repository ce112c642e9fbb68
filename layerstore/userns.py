"""Whether this process runs inside a user namespace, which changes how overlayfs is used.

Outside the initial user namespace (a rootless build, a container with user namespace
remapping) the ``trusted.*`` xattrs overlayfs keeps its bookkeeping in are out of reach, so
overlays are mounted with ``userxattr`` and opaque directories carry
``user.overlay.opaque=y`` instead of ``trusted.overlay.opaque=y``.
"""

from __future__ import annotations

import os

_IDENTITY_MAP = ["0", "0", "4294967295"]
_known: dict[int, bool] = {}


def in_user_namespace() -> bool:
    """True when this process's user namespace is not the initial one: its uid map is not
    the identity map of all 2^32 ids (the test runc and rootlesskit make)."""
    try:
        key = os.stat("/proc/self/ns/user").st_ino
    except OSError:
        key = -1
    known = _known.get(key)
    if known is None:
        try:
            with open("/proc/self/uid_map", encoding="ascii") as f:
                rows = [line.split() for line in f if line.strip()]
        except OSError:
            rows = [_IDENTITY_MAP]
        known = _known[key] = rows != [_IDENTITY_MAP]
    return known
