"""Build outputs (``--output``): archives, the final filesystem, a registry, metadata files.

The image is always kept in the local store too; outputs are written after it is stored.
``--output`` values follow buildx: ``type=oci,dest=x.tar``, ``type=docker,dest=x.tar``,
``type=local,dest=DIR``, ``type=tar,dest=x.tar``, ``type=registry`` (or ``type=image`` with
``push=true``), with an optional ``name=`` list, and ``type=cacheonly`` (the build only fills
the cache); a bare value is ``type=local,dest=VALUE``
and ``-`` is ``type=tar`` on stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from builder.errors import BuildError
from builder.exporters import (
    Pusher,
    Selected,
    destination,
    docker_images,
    export_local,
    export_registry,
    export_tar,
    write_docker_archive,
    write_oci_archive,
)
from builder.localimages import LocalImage
from builder.outputformat import LayerFormat, check_attributes, parse_layer_format
from builder.store import BuildStore
from layerstore.assembly import StoredImage
from layerstore.layout import LayoutEntry
from layerstore.oci import Descriptor

__all__ = ["TYPES", "OutputSpec", "Pusher", "parse_output", "write_metadata", "write_outputs"]

TYPES = ("docker", "oci", "local", "tar", "registry", "image", "cacheonly")


@dataclass(frozen=True)
class OutputSpec:
    """One ``--output``: its type, destination, image names, remaining attributes and the
    layer format they ask for."""

    type: str
    dest: str | None = None
    names: tuple[str, ...] = ()
    push: bool = False
    attrs: dict[str, str] = field(default_factory=dict)
    layers: LayerFormat = field(default_factory=LayerFormat)


def parse_output(text: str) -> OutputSpec:
    """Parse one ``--output`` value (see the module docstring)."""
    if "=" not in text:
        return OutputSpec("tar", None) if text == "-" else OutputSpec("local", text)
    attrs: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise BuildError(f"--output {text!r}: {part!r} is not key=value")
        attrs[key.strip().lower()] = value.strip()
    kind = attrs.pop("type", None)
    if kind is None:
        raise BuildError(f"--output {text!r}: type= is missing ({', '.join(TYPES)})")
    if kind not in TYPES:
        raise BuildError(f"--output {text!r}: unknown type {kind!r} ({', '.join(TYPES)})")
    dest = attrs.pop("dest", None)
    names = tuple(n for n in attrs.pop("name", "").split(",") if n)
    push = attrs.pop("push", "false").lower() in ("1", "true", "yes")
    check_attributes(kind, attrs, f"--output {text!r}")
    layers = parse_layer_format(attrs, f"--output {text!r}")
    if kind == "cacheonly" and (dest or names or push):
        raise BuildError(f"--output {text!r}: type=cacheonly exports nothing and takes no "
                         "dest, name or push")
    if kind == "registry":
        kind, push = "image", True
    if kind in ("local",) and not dest:
        raise BuildError(f"--output {text!r}: type=local needs dest=DIR")
    if kind in ("docker", "oci") and not dest:
        raise BuildError(f"--output {text!r}: type={kind} needs dest=FILE (the image is "
                         "stored locally anyway)")
    return OutputSpec(kind, dest, names, push, attrs, layers)


def write_outputs(store: BuildStore, image: StoredImage, chain: str | None,
                  tags: Sequence[str], outputs: Sequence[OutputSpec],
                  push: Pusher | None = None, top: Descriptor | None = None) -> list[str]:
    """Carry out every output with :mod:`builder.exporters`; returns the names pushed.
    ``top``: the index holding the image and its attestations, which OCI archives and pushes
    carry instead of the image alone (a docker archive cannot hold attestations)."""
    pushed: list[str] = []
    whole = replace(image, manifest=top) if top is not None else image
    for out in outputs:
        names = out.names or tuple(tags)
        if out.type == "oci":
            with destination(_path(out.dest)) as f:
                write_oci_archive(f, store.content, [LayoutEntry(n, whole.manifest)
                                                     for n in names] or
                                  [LayoutEntry(None, whole.manifest)])
        elif out.type == "docker":
            local = LocalImage(tuple(names), image.manifest, image, ())
            with destination(_path(out.dest)) as f:
                write_docker_archive(f, store.content, docker_images(
                    [Selected(local, n) for n in names] or [Selected(local, None)]))
        elif out.type == "local":
            export_local(store, chain, Path(out.dest or "."))
        elif out.type == "tar":
            with destination(_path(out.dest)) as f:
                export_tar(store, chain, f)
        elif out.type == "image" and out.push and push is not None:
            pushed.extend(export_registry(whole, names, push))
    return pushed


def _path(dest: str | None) -> Path | None:
    if dest in (None, "-"):
        if sys.stdout.isatty():
            raise BuildError("refusing to write an archive to a terminal: give dest=FILE or "
                             "redirect the output")
        return None
    return Path(dest)


def write_metadata(path: Path, image: StoredImage, names: Sequence[str],
                   top: Descriptor | None = None) -> None:
    """``--metadata-file``: the keys buildx writes (the digest and descriptor are those of
    ``top``, the index holding the image and its attestations, when there is one)."""
    whole = top or image.manifest
    desc = json.loads(whole.to_json())
    data = {
        "containerimage.digest": str(whole.digest),
        "containerimage.config.digest": str(image.config.digest),
        "containerimage.descriptor": desc,
        "image.name": ",".join(names),
    }
    try:
        path.write_text(json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        raise BuildError(f"cannot write --metadata-file {path}: {exc.strerror}") from None
