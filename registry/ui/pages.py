"""The browsing pages: projects → repositories (search, pages) → tags (pages, the
``docker pull`` line) → one manifest (config, layers and history, index children,
referrers), and deleting a tag or manifest after a confirmation page.

A repository the viewer may not pull is "not found", whether or not it exists, so that
nothing leaks its name; deleting needs the ``delete`` action (the same rules, project roles
and settings as ``DELETE /v2/<name>/manifests/<reference>``) and is refused with a message
otherwise.
"""

from __future__ import annotations

import math
import re
from urllib.parse import quote, urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from registry import audit
from registry.audit.events import DELETE
from registry.auth.rules import DELETE as DELETE_ACTION
from registry.errors import RegistryError
from registry.handlers.base import Services
from registry.handlers.manifests import delete_reference
from registry.names import check_name, check_tag, is_digest_reference, parse_digest
from registry.storage.threads import run_blocking
from registry.ui.catalog import (
    TOP_LEVEL,
    actions,
    can_pull,
    find_group,
    groups,
    principal_of_viewer,
    repositories_in,
)
from registry.ui.errors import UIError, UIForbidden, UINotFound
from registry.ui.images import manifest_view, tag_row
from registry.ui.render import PREFIX, render
from registry.ui.session import Viewer, logins_of, require_csrf, viewer

router = APIRouter()
PAGE_SIZE = 50
_DELETED = re.compile(r"tag [A-Za-z0-9_][A-Za-z0-9._-]{0,127}|manifest sha(256|512):[0-9a-f]+")
MAX_QUERY = 100


def _services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def _page(value: str | None) -> int:
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


def repository_url(repository: str) -> str:
    """The tags page of ``repository``."""
    return f"{PREFIX}/r/{quote(repository)}"


def manifest_url(repository: str, digest: str) -> str:
    """The manifest page of ``digest`` in ``repository``."""
    return f"{PREFIX}/r/{quote(repository)}/-/manifest/{quote(digest)}"


def _visible_repository(request: Request, repository: str) -> tuple[Services, Viewer | None]:
    services = _services(request)
    who = viewer(request)
    try:
        check_name(repository)
    except RegistryError:
        raise UINotFound(f"no repository {repository[:200]!r}: not a valid name") from None
    if not can_pull(services, who, repository) or \
            not services.metadata.repository_exists(repository):
        hint = "" if who is not None else " (log in to see private repositories)"
        raise UINotFound(f"repository {repository} does not exist or you may not see "
                         f"it{hint}")
    return services, who


def deletion_refusal(services: Services, who: Viewer | None, repository: str) -> str:
    """Why ``who`` may not delete in ``repository`` (``""``: it may)."""
    settings = services.settings
    if settings.read_only:
        return "the registry is read-only: nothing can be deleted"
    if not settings.delete_enabled:
        return "deletion is disabled on this registry (delete_enabled = false)"
    if DELETE_ACTION not in actions(services, who, repository):
        name = who.name if who is not None else "an anonymous visitor"
        logins = logins_of(services)
        note = None if logins is None else logins.policy.project_note(
            principal_of_viewer(who), repository, DELETE_ACTION)
        return f"{name} may not delete in {repository}: " + (
            note or "the access rules grant no delete action there")
    return ""


def _group_label(name: str) -> str:
    return "repositories without a namespace" if name == TOP_LEVEL else name


@router.get("/", include_in_schema=False)
async def projects_page(request: Request) -> Response:
    """The projects and namespaces the viewer may see, with usage against quota."""
    rows = await run_blocking(groups, _services(request), viewer(request))
    return render(request, "projects.html", groups=rows, label=_group_label)


@router.get("/p/{group}", include_in_schema=False)
async def repositories_page(request: Request, group: str, q: str = "",
                            page: str = "1") -> Response:
    """The repositories of a project or namespace, searched and in pages."""
    services, who = _services(request), viewer(request)
    found = await run_blocking(find_group, services, who, group)
    if found is None:
        hint = "" if who is not None else " (log in to see private projects)"
        raise UINotFound(f"project {group[:200]!r} does not exist or you may not see "
                         f"it{hint}")
    query = q.strip()[:MAX_QUERY]

    def matching() -> list[str]:
        return [r for r in repositories_in(services, group)
                if (not query or query.lower() in r.lower()) and can_pull(services, who, r)]

    names = await run_blocking(matching)
    pages = max(1, math.ceil(len(names) / PAGE_SIZE))
    number = min(_page(page), pages)
    shown = names[(number - 1) * PAGE_SIZE:number * PAGE_SIZE]
    return render(request, "repositories.html", group=found, label=_group_label(group),
                  repositories=[(r, repository_url(r)) for r in shown], query=query,
                  page=number, pages=pages, total=len(names),
                  page_url=lambda n: f"?{urlencode({'q': query, 'page': n})}")


@router.get("/r/{repository:path}/-/manifest/{reference}", include_in_schema=False)
async def manifest_page(request: Request, repository: str, reference: str) -> Response:
    """One manifest: config fields, layers and history, index children, referrers."""
    services, who = _visible_repository(request, repository)
    record = await run_blocking(services.metadata.resolve, repository, reference)
    if record is None:
        raise UINotFound(f"manifest {reference[:200]} is not in repository {repository}")
    tagged = await run_blocking(services.metadata.tagged, repository)
    tags = tuple(sorted(t for t, d in tagged.items() if d == record.digest))
    view = await manifest_view(services, repository, record, tags)
    return render(request, "manifest.html", m=view, repository=repository,
                  repository_url=repository_url(repository),
                  manifest_url=lambda d: manifest_url(repository, d),
                  pull=f"{request.headers.get('host', 'localhost')}/{repository}@{view.digest}",
                  refusal=deletion_refusal(services, who, repository),
                  delete_url=_delete_url(repository, view.digest))


def _delete_url(repository: str, reference: str) -> str:
    return f"{PREFIX}/r/{quote(repository)}/-/delete?{urlencode({'ref': reference})}"


def _reference(repository: str, ref: str) -> str:
    try:
        if is_digest_reference(ref):
            return str(parse_digest(ref, repository))
        return check_tag(ref, repository)
    except RegistryError as err:
        raise UIError(err.message) from None


@router.get("/r/{repository:path}/-/delete", include_in_schema=False)
async def confirm_delete(request: Request, repository: str, ref: str = "") -> Response:
    """The confirmation page of deleting a tag or a manifest."""
    services, who = _visible_repository(request, repository)
    reference = _reference(repository, ref)
    refusal = deletion_refusal(services, who, repository)
    if refusal:
        raise UIForbidden(f"refused: {refusal}")
    record = await run_blocking(services.metadata.resolve, repository, reference)
    if record is None:
        raise UINotFound(f"{reference} is not in repository {repository}")
    tagged = await run_blocking(services.metadata.tagged, repository)
    also = sorted(t for t, d in tagged.items() if d == record.digest and t != reference)
    return render(request, "confirm_delete.html", repository=repository,
                  reference=reference, digest=str(record.digest),
                  is_digest=is_digest_reference(reference), also=also,
                  back=repository_url(repository))


@router.post("/r/{repository:path}/-/delete", include_in_schema=False)
async def delete(request: Request, repository: str) -> Response:
    """Delete the tag or manifest the confirmation form names."""
    form = await request.form()
    require_csrf(request, form)
    services, who = _visible_repository(request, repository)
    reference = _reference(repository, str(form.get("ref", "")))
    refusal = deletion_refusal(services, who, repository)
    if refusal:
        raise UIForbidden(f"refused: {refusal}")
    try:
        found, audited = await delete_reference(services, repository, reference)
    except RegistryError as err:
        raise UIForbidden(f"refused: {err.message}") from None
    if not found:
        raise UINotFound(f"{reference} is not in repository {repository} (deleted already?)")
    audit.record(audit.request_event(DELETE, request, who.name if who else None, repository,
                                     reference, audited, detail="web UI"),
                 services.settings)
    what = "manifest" if is_digest_reference(reference) else "tag"
    target = repository_url(repository) if services.metadata.repository_exists(repository) \
        else f"{PREFIX}/"
    return RedirectResponse(f"{target}?{urlencode({'deleted': f'{what} {reference}'})}",
                            status_code=303)


@router.get("/r/{repository:path}", include_in_schema=False)
async def tags_page(request: Request, repository: str, q: str = "", page: str = "1",
                    deleted: str = "") -> Response:
    """The tags of a repository, in pages: size, pushed at, digest, platforms, pull line."""
    services, who = _visible_repository(request, repository)
    tagged = await run_blocking(services.metadata.tagged, repository)
    query = q.strip()[:MAX_QUERY]
    names = sorted(t for t in tagged if not query or query.lower() in t.lower())
    pages = max(1, math.ceil(len(names) / PAGE_SIZE))
    number = min(_page(page), pages)
    rows = []
    for name in names[(number - 1) * PAGE_SIZE:number * PAGE_SIZE]:
        row = await tag_row(services, repository, name, tagged[name])
        if row is not None:
            rows.append(row)
    host = request.headers.get("host", "localhost")
    flashes = [("ok", f"Deleted {deleted}.")] if _DELETED.fullmatch(deleted) else []
    return render(request, "tags.html", repository=repository, tags=rows, total=len(names),
                  page=number, pages=pages, query=query, host=host, flashes=flashes,
                  refusal=deletion_refusal(services, who, repository),
                  manifest_url=lambda d: manifest_url(repository, d),
                  delete_url=lambda ref: _delete_url(repository, ref),
                  page_url=lambda n: f"?{urlencode({'q': query, 'page': n})}")
