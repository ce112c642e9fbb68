"""The file operations of COPY and ADD, with BuildKit's semantics.

- :func:`copy_into` carries out a :class:`CopySpec` on a mounted root filesystem.
- :func:`resolve_user` / :func:`resolve_chown`: ``USER`` and ``--chown`` against the image's
  ``/etc/passwd`` and ``/etc/group``.
- :func:`parse_chmod`: octal and symbolic ``--chmod`` values.
- :func:`select_sources`: source paths and wildcard patterns below a source root.
- :func:`resolve_path`: chroot-style path resolution inside a root filesystem
  (:func:`layerstore.rootpath.resolve`).
"""

from builder.fileops.chmod import ModeSpec, parse_chmod
from builder.fileops.copy import CopySpec, copy_into
from builder.fileops.sources import Source, select_sources
from builder.fileops.users import ResolvedUser, resolve_chown, resolve_user
from layerstore.rootpath import resolve as resolve_path

__all__ = ["CopySpec", "ModeSpec", "ResolvedUser", "Source", "copy_into", "parse_chmod",
           "resolve_chown", "resolve_path", "resolve_user", "select_sources"]
