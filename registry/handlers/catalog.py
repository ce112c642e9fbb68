"""``GET /v2/_catalog`` with ``n``/``last`` pagination and a ``Link`` header."""

from __future__ import annotations

from starlette.responses import Response

from registry.auth.access import AllowAll, can_see
from registry.handlers.base import MAX_PAGE, Context, json_response, next_link, pagination


async def list_repositories(ctx: Context) -> Response:
    """Repository names the caller may see, sorted, at most ``n`` (or :data:`MAX_PAGE`)
    a page."""
    n, last = pagination(ctx.request)
    page = MAX_PAGE if n is None else n
    headers: dict[str, str] = {}
    names: list[str] = []
    if page > 0:
        names = _visible_names(ctx, last, page + 1)
        if len(names) > page:
            names = names[:page]
            headers["Link"] = next_link("/v2/_catalog", page, names[-1])
    return json_response({"repositories": names}, headers=headers)


def _visible_names(ctx: Context, last: str | None, want: int) -> list[str]:
    """Up to ``want`` names after ``last`` that the caller may see, reading the metadata
    a batch at a time until enough are found or none are left."""
    authorizer, identity = ctx.services.authorizer, ctx.identity
    if isinstance(authorizer, AllowAll):
        return ctx.services.metadata.repositories(last, want)
    found: list[str] = []
    while len(found) < want:
        batch = ctx.services.metadata.repositories(last, max(want, MAX_PAGE))
        found.extend(n for n in batch if can_see(authorizer, identity, n))
        if len(batch) < max(want, MAX_PAGE):
            break
        last = batch[-1]
    return found[:want]
