"""``pybuild run --platform``: the image of one platform, emulated when it is foreign."""

from __future__ import annotations

from builder.localimages import LocalImage
from builder.platforms import parse_one
from builder.platforms_images import select_platform
from builder.platforms_qemu import ensure_emulation
from builder.store import BuildStore

__all__ = ["prepare_platform"]


def prepare_platform(store: BuildStore, image: LocalImage, text: str, ref: str) -> LocalImage:
    """``image`` for the ``--platform`` value ``text``, with its emulator registered."""
    platform = parse_one(text, "--platform")
    chosen = select_platform(store, image, platform, ref)
    ensure_emulation(platform)
    return chosen
