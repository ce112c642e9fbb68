"""Exporters: where a built image goes, as a library below the commands.

- :mod:`~builder.exporters.image`: the image store (config, manifest, names).
- :mod:`~builder.exporters.archives`: an OCI layout or a docker-archive as one tar
  (``--output type=oci|docker``, ``pybuild save``), written to a file atomically or to stdout.
- :mod:`~builder.exporters.filesystem`: the final filesystem as a directory
  (``type=local``) or a tar (``type=tar``).
- :mod:`~builder.exporters.index`: the image index of a multi-platform build.
- :mod:`~builder.exporters.registry`: pushing to a registry (``type=registry``).

Tars are written by :class:`layerstore.archive.writer.TarWriter`, directories copied by
:mod:`layerstore.treecopy`; nothing here runs ``tar`` or ``cp``.
"""

from builder.exporters.archives import (
    Selected,
    destination,
    docker_images,
    write_docker_archive,
    write_oci_archive,
)
from builder.exporters.filesystem import export_local, export_tar
from builder.exporters.image import export_image, name_image
from builder.exporters.index import assemble_index, platform_descriptor
from builder.exporters.registry import Pusher, export_registry

__all__ = ["Pusher", "Selected", "assemble_index", "destination", "docker_images", "export_image",
           "export_local", "export_registry", "export_tar", "name_image", "platform_descriptor",
           "write_docker_archive", "write_oci_archive"]
