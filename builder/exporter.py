"""Compatibility name of :mod:`builder.exporters.image`."""

from builder.exporters.image import export_image, name_image

__all__ = ["export_image", "name_image"]
