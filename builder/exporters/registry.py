"""Pushing a built image to a registry (``--push``, ``--output type=registry``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from builder.errors import BuildError
from layerstore.assembly import StoredImage

__all__ = ["Pusher", "export_registry"]

#: Pushes an image under a name and returns the pushed reference (see
#: :class:`builder.transfer.RegistryAccess`).
Pusher = Callable[[StoredImage, str], str]


def export_registry(image: StoredImage, names: Sequence[str], push: Pusher) -> list[str]:
    """Push ``image`` under every name; return the names pushed."""
    if not names:
        raise BuildError("nothing to push: give -t NAME or --output type=registry,name=NAME")
    pushed = []
    for name in names:
        push(image, name)
        pushed.append(name)
    return pushed
