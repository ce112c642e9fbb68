"""``/v2/<name>/manifests/<reference>``: GET, HEAD, PUT and DELETE by tag or by digest."""

from __future__ import annotations

import json
import time

from starlette.requests import Request
from starlette.responses import Response

from layerstore.digest import Digest
from layerstore.errors import LayerstoreError
from layerstore.oci import Descriptor, Index, Manifest, MediaType
from registry import audit
from registry.audit.events import DELETE, PULL, PUSH
from registry.errors import (
    BLOB_UNKNOWN,
    DENIED,
    DIGEST_INVALID,
    MANIFEST_INVALID,
    MANIFEST_UNKNOWN,
    NAME_UNKNOWN,
    SIZE_INVALID,
    RegistryError,
)
from registry.handlers.base import (
    Context,
    RawResponse,
    Services,
    absolute_url,
    content_length,
    discard_body,
    read_body,
    respond,
)
from registry.metadata.reads import ManifestHead
from registry.metadata.store import ManifestRecord, TagMoved, TagProtected
from registry.names import check_tag, is_digest_reference, parse_digest
from registry.storage.errors import BlobUnknown
from registry.storage.manifests import MANIFEST_TYPES, ParsedManifest
from registry.storage.threads import run_blocking
from registry.tagpolicy.errors import TagImmutable

_UNTYPED = frozenset({"", "application/json", "application/octet-stream"})
_ANY = frozenset({"*/*", "application/*", "application/json"})


def _unknown(ctx: Context, what: str) -> RegistryError:
    if not ctx.services.metadata.repository_exists(ctx.name):
        return RegistryError(NAME_UNKNOWN, f"repository {ctx.name!r} is not known",
                             detail={"name": ctx.name})
    return RegistryError(MANIFEST_UNKNOWN, f"manifest {what} is unknown to repository "
                         f"{ctx.name!r}", detail={"name": ctx.name, "reference": what})


def _immutable(err: TagImmutable) -> RegistryError:
    return RegistryError(DENIED, str(err), detail={
        "name": err.repository, "tag": err.tag, "rule": err.rule,
        "reason": "the tag is immutable"})


def _check_reference(reference: str, name: str) -> None:
    if is_digest_reference(reference):
        parse_digest(reference, name)
    else:
        check_tag(reference, name)


def acceptable(request: Request, media_type: str) -> bool:
    """Whether the ``Accept`` headers allow ``media_type`` (no header allows anything)."""
    values = request.headers.getlist("accept")
    if not values:
        return True
    for value in values:
        for item in value.split(","):
            kind, _, params = item.partition(";")
            kind = kind.strip().lower()
            if (kind == media_type or kind in _ANY) and not _refused(params):
                return True
    return False


def _refused(params: str) -> bool:
    """Whether media-type parameters carry ``q=0`` (RFC 9110: "not acceptable")."""
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return float(value.strip()) == 0.0
            except ValueError:
                return False
    return False


async def _resolve(ctx: Context) -> ManifestHead:
    head = await ctx.services.reads.manifest_head(ctx.name, ctx.arg)
    if head is None:
        _check_reference(ctx.arg, ctx.name)
        raise _unknown(ctx, ctx.arg)
    if not acceptable(ctx.request, head.media_type):
        raise RegistryError(
            MANIFEST_UNKNOWN,
            f"manifest {ctx.arg} of {ctx.name!r} is a {head.media_type}, which the Accept "
            "header does not allow", detail={"mediaType": head.media_type},
        )
    return head


def _headers(head: ManifestHead) -> list[tuple[bytes, bytes]]:
    digest = str(head.digest).encode()
    return [
        (b"content-type", head.media_type.encode()),
        (b"content-length", str(head.size).encode()),
        (b"docker-content-digest", digest),
        (b"etag", b'"' + digest + b'"'),
    ]


async def head(ctx: Context) -> Response:
    """HEAD a manifest: its type, size and digest."""
    return RawResponse(200, _headers(await _resolve(ctx)))


async def get(ctx: Context) -> Response:
    """GET a manifest as it was pushed, with its stored media type (the bytes by digest
    from the content cache)."""
    found = await _resolve(ctx)
    try:
        body = await ctx.services.blobs.read_small(found.digest)
    except (RegistryError, BlobUnknown) as err:
        if isinstance(err, BlobUnknown) or err.code is BLOB_UNKNOWN:
            raise RegistryError(MANIFEST_UNKNOWN, f"manifest {found.digest} of "
                                f"{ctx.name!r} has no content") from None
        raise
    audit.record(audit.request_event(PULL, ctx.request, ctx.identity.subject, ctx.name,
                                     ctx.arg, str(found.digest)), ctx.services.settings)
    return RawResponse(200, _headers(found), body)


def _media_type(content_type: str, declared: object, where: str) -> str:
    kind = content_type.partition(";")[0].strip().lower()
    if kind in MANIFEST_TYPES:
        if declared is not None and declared != kind:
            raise RegistryError(
                MANIFEST_INVALID,
                f"{where}: Content-Type {kind} does not match the manifest's mediaType "
                f"{declared!r}", detail={"Content-Type": kind, "mediaType": declared},
            )
        return kind
    if kind in _UNTYPED and isinstance(declared, str) and declared in MANIFEST_TYPES:
        return declared
    raise RegistryError(
        MANIFEST_INVALID,
        f"{where}: unsupported manifest media type {(kind or declared)!r}; push an OCI "
        "image manifest or index, or a Docker schema2 manifest or manifest list",
        detail={"Content-Type": kind, "mediaType": declared},
    )


def parse_manifest(body: bytes, content_type: str, algorithm: str, where: str
                   ) -> ParsedManifest:
    """Validate a pushed manifest and describe what storing it takes; MANIFEST_INVALID
    naming the problem otherwise."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise RegistryError(MANIFEST_INVALID, f"{where}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RegistryError(MANIFEST_INVALID, f"{where}: not a JSON object")
    try:
        json.dumps(doc, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise RegistryError(MANIFEST_INVALID, f"{where}: a string holds an unpaired UTF-16 "
                            "surrogate escape, which is not Unicode text") from None
    media_type = _media_type(content_type, doc.get("mediaType"), where)
    try:
        if media_type in MediaType.INDEXES:
            model: Manifest | Index = Index.from_dict(doc, where)
        else:
            model = Manifest.from_dict(doc, where)
    except (LayerstoreError, RecursionError, ValueError) as exc:
        raise RegistryError(MANIFEST_INVALID, str(exc)) from None
    if isinstance(model, Manifest):
        blobs = (model.config, *model.layers)
        children: tuple[Descriptor, ...] = ()
        artifact_type: str | None = model.artifact_type or model.config.media_type
    else:
        blobs, children, artifact_type = (), model.manifests, model.artifact_type
    record = ManifestRecord(
        digest=Digest.from_bytes(body, algorithm),
        media_type=media_type,
        size=len(body),
        references=tuple(d.digest for d in (*blobs, *children)),
        subject=model.subject.digest if model.subject is not None else None,
        artifact_type=artifact_type,
        annotations=model.annotations,
        created_at=time.time(),
    )
    return ParsedManifest(record, blobs, children)


async def put(ctx: Context) -> Response:
    """PUT a manifest by tag or digest (plus ``?tag=`` tags): validate, check that what it
    references is in the repository, store it (201)."""
    name, reference, services = ctx.name, ctx.arg, ctx.services
    expected: Digest | None = None
    tags: list[str] = []
    if is_digest_reference(reference):
        expected = parse_digest(reference, name)
    else:
        tags.append(check_tag(reference, name))
    for tag in ctx.request.query_params.getlist("tag"):
        if check_tag(tag, name) not in tags:
            tags.append(tag)
    limit = services.settings.max_manifest_bytes

    def too_large() -> RegistryError:
        return RegistryError(
            SIZE_INVALID, f"manifest {reference} for {name!r} is larger than the "
            f"{limit}-byte limit", status=413, detail={"limit": limit})

    declared = content_length(ctx.request)
    if declared is not None and declared > limit:
        await discard_body(ctx.request)
        raise too_large()
    body = await read_body(ctx.request, limit, too_large)
    where = f"manifest {reference} for {name!r}"
    parsed = await run_blocking(
        parse_manifest, body, ctx.request.headers.get("content-type", ""),
        expected.algorithm if expected else "sha256", where)
    record = parsed.record
    if expected is not None and record.digest != expected:
        raise RegistryError(DIGEST_INVALID, f"{where}: its content hashes to {record.digest}",
                            detail={"digest": str(record.digest)})

    if services.quota is not None:
        await services.quota.check_adding(name, record.digest, len(body), "the manifest")
    fixed: tuple[str, ...] = ()
    policy = services.tag_policy
    try:
        if policy is not None and tags:
            fixed = await run_blocking(policy.check_push, services.metadata, name, tuple(tags),
                                       record.digest)
        await services.manifests.put(name, parsed, body, tuple(tags), fixed)
    except TagMoved as err:
        assert policy is not None
        raise _immutable(policy.refusal(name, err.tag, policy.protecting(name, err.tag),
                                        err.digest, "move")) from None
    except TagImmutable as err:
        raise _immutable(err) from None
    audit.record(audit.request_event(PUSH, ctx.request, ctx.identity.subject, name, reference,
                                     str(record.digest), ",".join(tags)), services.settings)
    headers = {"Location": absolute_url(ctx.request, f"/v2/{name}/manifests/{record.digest}"),
               "Docker-Content-Digest": str(record.digest)}
    if record.subject is not None:
        headers["OCI-Subject"] = str(record.subject)
    return respond(201, headers)


async def delete_reference(services: Services, name: str, reference: str
                           ) -> tuple[bool, str]:
    """Delete ``reference`` of repository ``name`` as ``DELETE /v2/<name>/manifests/<ref>``
    does: a tag removes the tag (unless the tag policy keeps it), a digest the manifest and
    its tags (unless an immutable tag points at it). Returns whether it existed and the
    digest the audit log names; RegistryError TAG_INVALID/DIGEST_INVALID for a bad
    reference, DENIED for an immutable one. The caller checks the viewer's rights, the
    read-only and delete settings, and records the audit event."""
    manifests = services.manifests
    policy, meta = services.tag_policy, services.metadata
    try:
        if is_digest_reference(reference):
            digest = parse_digest(reference, name)
            audited = str(digest)
            guard = None if policy is None else await run_blocking(policy.protector, name)
            found = await run_blocking(manifests.delete, name, digest, guard)
        else:
            tag = check_tag(reference, name)
            tagged = await services.reads.manifest_head(name, tag)
            audited = str(tagged.digest) if tagged is not None else ""
            deletable = policy is None or await run_blocking(policy.check_delete_tag, meta,
                                                             name, tag)
            found = deletable and await run_blocking(manifests.delete_tag, name, tag)
    except TagProtected as err:
        assert policy is not None
        raise _immutable(policy.refusal(name, err.tag, policy.protecting(name, err.tag),
                                        err.digest, "delete")) from None
    except TagImmutable as err:
        raise _immutable(err) from None
    return found, audited


async def delete(ctx: Context) -> Response:
    """DELETE by tag removes the tag; by digest, the manifest and its tags (202)."""
    name, reference = ctx.name, ctx.arg
    found, audited = await delete_reference(ctx.services, name, reference)
    if not found:
        raise _unknown(ctx, reference)
    audit.record(audit.request_event(DELETE, ctx.request, ctx.identity.subject, name,
                                     reference, audited), ctx.services.settings)
    return respond(202)
