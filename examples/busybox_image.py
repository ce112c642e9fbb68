"""Make a busybox base image with layerstore and write it as an OCI layout and a docker-archive.

    python examples/busybox_image.py OUTDIR [--name busybox:local]

Prints the manifest digest, the layout path and the archive path.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from layerstore.assembly import assemble_image, history_entry, host_architecture
from layerstore.content.local import LocalStore
from layerstore.diff import write_tree
from layerstore.docker_archive import ArchiveImage, write_docker_archive
from layerstore.errors import LayerstoreError
from layerstore.images import ImageStore, split_name
from layerstore.layout import LayoutEntry, write_layout
from layerstore.oci import Image, ImageConfig
from layerstore.testing.rootfs import make_busybox_rootfs


def main(argv: list[str] | None = None) -> int:
    """Build the image into OUTDIR/store and export it; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--name", default="pybuild-example/busybox:local")
    args = parser.parse_args(argv)
    try:
        repo, tag = split_name(args.name)
        store = LocalStore(args.outdir / "store" / "content")
        with tempfile.TemporaryDirectory() as tmp:
            rootfs = make_busybox_rootfs(Path(tmp) / "rootfs")
            layer = write_tree(rootfs, store, "gzip", source_date_epoch=0)
        config = ImageConfig(env=("PATH=/usr/sbin:/usr/bin:/sbin:/bin",),
                             cmd=("sh", "-c", "echo hello from a pybuild busybox image"))
        image = Image(architecture=host_architecture(), os="linux",
                      created="1970-01-01T00:00:00Z", config=config,
                      history=(history_entry("busybox-static rootfs",
                                             created="1970-01-01T00:00:00Z"),))
        stored = assemble_image(store, image, [layer])
        ImageStore(args.outdir / "store" / "images.db").put(f"{repo}:{tag}", stored.manifest)
        layout = args.outdir / "oci-layout"
        write_layout(layout, store, [LayoutEntry(tag, stored.manifest)])
        archive = args.outdir / "docker-archive.tar"
        write_docker_archive(archive, store, [ArchiveImage(stored, (f"{repo}:{tag}",))])
    except LayerstoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"image        {repo}:{tag}")
    print(f"manifest     {stored.manifest.digest}")
    print(f"layer        {layer.descriptor.digest} (diff_id {layer.diff_id})")
    print(f"oci layout   {layout} (ref {tag})")
    print(f"docker tar   {archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
