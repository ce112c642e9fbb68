"""``GET /v2/<name>/referrers/<digest>``: the manifests whose ``subject`` is ``<digest>``,
as an OCI image index (never a 404)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from layerstore.oci import MediaType
from registry.handlers.base import Context, json_response
from registry.metadata.store import ManifestRecord
from registry.names import parse_digest


def descriptor(record: ManifestRecord) -> dict[str, Any]:
    """The index entry of a referrer."""
    out: dict[str, Any] = {
        "mediaType": record.media_type,
        "digest": str(record.digest),
        "size": record.size,
    }
    if record.artifact_type:
        out["artifactType"] = record.artifact_type
    if record.annotations:
        out["annotations"] = dict(record.annotations)
    return out


async def list_referrers(ctx: Context) -> Response:
    """The referrers of a manifest, optionally only those of one ``artifactType``."""
    subject = parse_digest(ctx.arg, ctx.name)
    artifact_type = ctx.request.query_params.get("artifactType") or None
    records = ctx.services.metadata.referrers(ctx.name, subject, artifact_type)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else None
    index = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_INDEX,
        "manifests": [descriptor(r) for r in records],
    }
    return json_response(index, headers=headers, content_type=MediaType.OCI_INDEX)
