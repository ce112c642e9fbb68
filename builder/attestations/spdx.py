"""An SPDX 2.3 JSON document listing the packages of an image.

The document describes one root package (the image, named by its first tag) that CONTAINS
every package found; each package carries its package URL as a ``PACKAGE-MANAGER`` external
reference and the file it was read from in ``sourceInfo``. Values SPDX requires and this
builder does not know are ``NOASSERTION``.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from typing import Any

from builder.attestations.packages import Package

__all__ = ["SPDX_PREDICATE", "spdx_document"]

SPDX_PREDICATE = "https://spdx.dev/Document"
NOASSERTION = "NOASSERTION"
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")
# SPDX license-list identifiers are too many to check; a simple expression of words joined
# by AND/OR/WITH passes as licenseDeclared, anything else is NOASSERTION.
_LICENSE_RE = re.compile(r"^\(?[A-Za-z0-9.+-]+(?:\s+(?:AND|OR|WITH)\s+\(?[A-Za-z0-9.+-]+\)?)*\)?$")


def _spdx_id(package: Package) -> str:
    """An SPDX identifier unique to the package and the record it was read from."""
    digest = hashlib.sha256(f"{package.purl}|{package.location}".encode()).hexdigest()[:16]
    base = _ID_UNSAFE.sub("-", f"SPDXRef-Package-{package.type}-{package.name}")
    return f"{base}-{digest}"


def _license(text: str | None) -> str:
    if text and _LICENSE_RE.match(text.strip()):
        return text.strip()
    return NOASSERTION


def _package(package: Package, ident: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": package.name,
        "SPDXID": ident,
        "versionInfo": package.version,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": _license(package.license),
        "copyrightText": NOASSERTION,
        "sourceInfo": f"acquired package info from {package.location}",
        "primaryPackagePurpose": "LIBRARY",
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                          "referenceLocator": package.purl}],
    }
    if package.supplier:
        entry["supplier"] = f"Person: {package.supplier}" if "@" in package.supplier or \
            " " in package.supplier else f"Organization: {package.supplier}"
    if package.homepage:
        entry["homepage"] = package.homepage
    return entry


def spdx_document(packages: Sequence[Package], *, name: str, created: str,
                  creator: str, namespace_seed: str) -> dict[str, Any]:
    """The SPDX 2.3 document (as JSON-ready data) of ``packages`` in the image ``name``.

    ``created`` is an RFC 3339 UTC time, ``creator`` the tool (``pybuild-0.1.0``);
    ``namespace_seed`` (the image digest) makes the document namespace unique and stable.
    SPDX dates have whole seconds: a fraction of ``created`` is dropped.
    """
    created = re.sub(r"\.\d+Z$", "Z", created)
    root_id = "SPDXRef-Image"
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"{name}@{namespace_seed}")
    entries = [{
        "name": name,
        "SPDXID": root_id,
        "versionInfo": namespace_seed,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": "CONTAINER",
    }]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": root_id}]
    for package in packages:
        ident = _spdx_id(package)
        entries.append(_package(package, ident))
        relationships.append({"spdxElementId": root_id, "relationshipType": "CONTAINS",
                              "relatedSpdxElement": ident})
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": f"https://spdx.org/spdxdocs/pybuild/{namespace}",
        "creationInfo": {"created": created, "creators": [f"Tool: {creator}"]},
        "documentDescribes": [root_id],
        "packages": entries,
        "relationships": relationships,
    }
