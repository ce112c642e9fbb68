"""Where registry storage keeps things in a driver's namespace.

``blobs/<alg>/<hex>`` is the content store's layout, so a filesystem driver rooted at
``<root>/content`` sees the blobs of a registry root written by earlier releases.
"""

from __future__ import annotations

from layerstore.digest import Digest


def blob_path(digest: Digest) -> str:
    """The committed bytes of a blob."""
    return f"blobs/{digest.algorithm}/{digest.hex}"


def upload_dir(upload_id: str) -> str:
    """Everything an upload session keeps."""
    return f"uploads/{upload_id}"


def upload_path(upload_id: str) -> str:
    """The bytes of an upload session."""
    return f"{upload_dir(upload_id)}/data"
