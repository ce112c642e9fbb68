"""in-toto statements: a predicate about subjects named by digest, as BuildKit writes them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from layerstore.digest import Digest
from layerstore.oci import Platform

__all__ = ["INTOTO_MEDIA_TYPE", "PREDICATE_ANNOTATION", "STATEMENT_V1",
           "Statement", "image_purl"]

INTOTO_MEDIA_TYPE = "application/vnd.in-toto+json"
PREDICATE_ANNOTATION = "in-toto.io/predicate-type"
STATEMENT_V1 = "https://in-toto.io/Statement/v1"


def image_purl(name: str, platform: Platform) -> str:
    """The package URL BuildKit names an image subject or a base image by:
    ``pkg:docker/busybox@latest?platform=linux%2Famd64`` (a name pinned by digest alone
    gives the digest as the version)."""
    repo, _, digest = name.partition("@")
    tag = None
    colon = repo.rfind(":")
    if colon > repo.rfind("/"):
        repo, tag = repo[:colon], repo[colon + 1:]
    if repo.startswith("docker.io/"):
        repo = repo.removeprefix("docker.io/")
        repo = repo.removeprefix("library/") if repo.count("/") == 1 else repo
    version = tag or digest or "latest"
    return (f"pkg:docker/{repo}@{quote(version, safe='')}"
            f"?platform={quote(str(platform), safe='')}")


@dataclass(frozen=True)
class Statement:
    """One in-toto statement: ``predicate`` of type ``predicate_type`` about ``subjects``
    (name → digest)."""

    predicate_type: str
    predicate: Mapping[str, Any]
    subjects: tuple[tuple[str, Digest], ...] = ()
    statement_type: str = STATEMENT_V1

    def to_json(self) -> bytes:
        """The statement as JSON (keys in the order the in-toto spec lists them)."""
        body = {
            "_type": self.statement_type,
            "predicateType": self.predicate_type,
            "subject": [{"name": name, "digest": {digest.algorithm: digest.hex}}
                        for name, digest in self.subjects],
            "predicate": self.predicate,
        }
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()

    def about(self, subjects: Sequence[tuple[str, Digest]]) -> Statement:
        """The same statement about ``subjects``."""
        return Statement(self.predicate_type, self.predicate, tuple(subjects),
                         self.statement_type)
