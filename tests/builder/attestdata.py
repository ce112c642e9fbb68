"""Reading what an attested build stored: the index a name points at, its attestation
manifest and statements, and the shape of an index with the digests taken out (to compare
pybuild's layout with BuildKit's)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

from builder.store import BuildStore
from layerstore.oci import Descriptor

BUILDKIT_LAYOUT = Path(__file__).parent / "data" / "buildkit-attested.tar"
"""An OCI layout tar that BuildKit v0.32.2 (``buildctl build --output type=oci``) wrote for
``FROM scratch`` + ``COPY hello.txt`` named example.com/attest/hello:v1, with
``--opt attest:provenance=mode=max`` and ``--opt attest:sbom=generator=IMAGE``, IMAGE being a
busybox script that writes a one-package SPDX statement (no scanner image can be pulled
here): its SBOM's content is made up, its place and wrapping are BuildKit's."""
BUILDKIT_MULTI_LAYOUT = Path(__file__).parent / "data" / "buildkit-attested-multi.tar"
"""The same Dockerfile built by BuildKit v0.32.2 for linux/amd64 and linux/arm64 (COPY only,
so no emulation) with ``--opt attest:provenance=mode=min``: two images, two attestation
manifests."""


class Blobs:
    """Blobs by digest, from a store or from an OCI layout tar."""

    def __init__(self, read: Any) -> None:
        self.read = read

    @classmethod
    def of_store(cls, store: BuildStore) -> Blobs:
        def read(digest: str) -> bytes:
            from layerstore.digest import Digest

            with store.content.reader(Digest.parse(digest)) as f:
                return f.read()
        return cls(read)

    @classmethod
    def of_layout_tar(cls, path: Path) -> tuple[Blobs, dict[str, Any]]:
        with tarfile.open(path) as tar:
            files = {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                     for m in tar.getmembers() if m.isfile()}

        def read(digest: str) -> bytes:
            return files["blobs/" + digest.replace(":", "/")]
        return cls(read), json.loads(files["index.json"])

    def json(self, digest: str) -> Any:
        return json.loads(self.read(digest))


def statements(blobs: Blobs, index_digest: str) -> dict[str, dict[str, Any]]:
    """The in-toto statements of the index's (only) attestation manifest, by predicate type."""
    index = blobs.json(index_digest)
    attestation = next(m for m in index["manifests"] if m.get("annotations"))
    manifest = blobs.json(attestation["digest"])
    return {layer["annotations"]["in-toto.io/predicate-type"]: blobs.json(layer["digest"])
            for layer in manifest["layers"]}


def shape(blobs: Blobs, index_digest: str) -> dict[str, Any]:
    """The structure of an attested index without its digests, sizes and statement bodies."""
    index = blobs.json(index_digest)
    images = [m for m in index["manifests"] if not m.get("annotations")]
    out: dict[str, Any] = {"mediaType": index["mediaType"], "images": [], "attestations": []}
    for image in images:
        out["images"].append({"mediaType": image["mediaType"], "platform": image["platform"]})
    for entry in index["manifests"]:
        notes = entry.get("annotations")
        if not notes:
            continue
        about = [i for i in images if i["digest"] == notes["vnd.docker.reference.digest"]]
        manifest = blobs.json(entry["digest"])
        subject = manifest["subject"]
        out["attestations"].append({
            "mediaType": entry["mediaType"],
            "platform": entry["platform"],
            "reference.type": notes["vnd.docker.reference.type"],
            "about an image": len(about) == 1,
            "manifest keys": sorted(manifest),
            "artifactType": manifest["artifactType"],
            "config": {k: v for k, v in manifest["config"].items()},
            "layers": [(layer["mediaType"], sorted(layer["annotations"]))
                       for layer in manifest["layers"]],
            "subject is the image": subject == {k: about[0][k] for k in
                                                ("mediaType", "digest", "size")},
        })
    return out


def target_of(root: Path, name: str) -> Descriptor:
    """What ``name`` points at in the store at ``root``."""
    with BuildStore.open(root) as store:
        return store.images.get(name).target
