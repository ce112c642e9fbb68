"""Build outputs (``--output``): archives, the final filesystem, a registry, metadata files.

The image is always kept in the local store too; outputs are written after it is stored.
``--output`` values follow buildx: ``type=oci,dest=x.tar``, ``type=docker,dest=x.tar``,
``type=local,dest=DIR``, ``type=tar,dest=x.tar``, ``type=registry`` (or ``type=image`` with
``push=true``), with an optional ``name=`` list; a bare value is ``type=local,dest=VALUE``
and ``-`` is ``type=tar`` on stdout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from builder.commands.common import LocalImage
from builder.commands.save import (
    Selected,
    destination,
    docker_images,
    write_oci_archive,
)
from builder.errors import BuildError
from builder.outputformat import LayerFormat, check_attributes, parse_layer_format
from builder.store import BuildStore, view_of
from layerstore.assembly import StoredImage
from layerstore.docker_archive import write_docker_archive
from layerstore.layout import LayoutEntry

TYPES = ("docker", "oci", "local", "tar", "registry", "image")


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
    if kind == "registry":
        kind, push = "image", True
    if kind in ("local",) and not dest:
        raise BuildError(f"--output {text!r}: type=local needs dest=DIR")
    if kind in ("docker", "oci") and not dest:
        raise BuildError(f"--output {text!r}: type={kind} needs dest=FILE (the image is "
                         "stored locally anyway)")
    return OutputSpec(kind, dest, names, push, attrs, layers)


Pusher = Callable[[StoredImage, str], str]


def write_outputs(store: BuildStore, image: StoredImage, chain: str | None,
                  tags: Sequence[str], outputs: Sequence[OutputSpec],
                  push: Pusher | None = None) -> list[str]:
    """Carry out every output; returns the names pushed."""
    pushed: list[str] = []
    for out in outputs:
        names = out.names or tuple(tags)
        if out.type == "oci":
            with destination(_path(out.dest)) as f:
                write_oci_archive(f, store.content, [LayoutEntry(n, image.manifest)
                                                     for n in names] or
                                  [LayoutEntry(None, image.manifest)])
        elif out.type == "docker":
            local = LocalImage(tuple(names), image.manifest, image, ())
            with destination(_path(out.dest)) as f:
                write_docker_archive(f, store.content, docker_images(
                    [Selected(local, n) for n in names] or [Selected(local, None)]))
        elif out.type == "local":
            _copy_tree(store, chain, Path(out.dest or "."))
        elif out.type == "tar":
            with destination(_path(out.dest)) as f:
                _tar_tree(store, chain, f)
        elif out.type == "image" and out.push and push is not None:
            if not names:
                raise BuildError("nothing to push: give -t NAME or --output "
                                 "type=registry,name=NAME")
            for name in names:
                push(image, name)
                pushed.append(name)
    return pushed


def _path(dest: str | None) -> Path | None:
    if dest in (None, "-"):
        if sys.stdout.isatty():
            raise BuildError("refusing to write an archive to a terminal: give dest=FILE or "
                             "redirect the output")
        return None
    return Path(dest)


def _copy_tree(store: BuildStore, chain: str | None, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with view_of(store, chain) as root:
        done = subprocess.run(["cp", "-a", f"{root}/.", str(dest)], capture_output=True,
                              text=True, timeout=3600)
    if done.returncode != 0:
        raise BuildError(f"cannot write the filesystem to {dest}: {done.stderr.strip()}")


def _tar_tree(store: BuildStore, chain: str | None, out: BinaryIO) -> None:
    with view_of(store, chain) as root:
        proc = subprocess.Popen(["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf",
                                 "-", "."], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 20):
            out.write(chunk)
        if proc.wait() != 0:
            raise BuildError("cannot write the filesystem as a tar")


def write_metadata(path: Path, image: StoredImage, names: Sequence[str]) -> None:
    """``--metadata-file``: the keys buildx writes."""
    desc = json.loads(image.manifest.to_json())
    data = {
        "containerimage.digest": str(image.manifest.digest),
        "containerimage.config.digest": str(image.config.digest),
        "containerimage.descriptor": desc,
        "image.name": ",".join(names),
    }
    try:
        path.write_text(json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        raise BuildError(f"cannot write --metadata-file {path}: {exc.strerror}") from None
