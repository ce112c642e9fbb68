"""``GET /v2/_catalog`` with ``n``/``last`` pagination and a ``Link`` header."""

from __future__ import annotations

from starlette.responses import Response

from registry.handlers.base import MAX_PAGE, Context, json_response, next_link, pagination


async def list_repositories(ctx: Context) -> Response:
    """Repository names, sorted, at most ``n`` (or :data:`MAX_PAGE`) a page."""
    n, last = pagination(ctx.request)
    page = MAX_PAGE if n is None else n
    headers: dict[str, str] = {}
    names: list[str] = []
    if page > 0:
        names = ctx.services.metadata.repositories(last, page + 1)
        if len(names) > page:
            names = names[:page]
            headers["Link"] = next_link("/v2/_catalog", page, names[-1])
    return json_response({"repositories": names}, headers=headers)
