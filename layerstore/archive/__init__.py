"""Layer tar archives: a reproducible writer, a strict reader, and safe extraction.

- :mod:`~layerstore.archive.writer`: :class:`TarWriter` and the sorted tree walk.
- :mod:`~layerstore.archive.reader`: :class:`TarReader` (parse + diff_id) and
  :class:`Applier` (extract below a root, whiteouts, metadata).
- :mod:`~layerstore.archive.safepath`: resolving entry paths inside the root.
- :mod:`~layerstore.archive.whiteout`: OCI whiteouts versus overlayfs whiteouts.
"""

from layerstore.archive.reader import Applier, TarEntry, TarReader
from layerstore.archive.safepath import RootResolver, clean_entry_name
from layerstore.archive.writer import TarWriter, walk

__all__ = ["Applier", "RootResolver", "TarEntry", "TarReader", "TarWriter", "clean_entry_name",
           "walk"]
