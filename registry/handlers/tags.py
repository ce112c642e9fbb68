"""``GET /v2/<name>/tags/list`` with ``n``/``last`` pagination and a ``Link`` header."""

from __future__ import annotations

from starlette.responses import Response

from registry.errors import NAME_UNKNOWN, RegistryError
from registry.handlers.base import Context, json_response, next_link, pagination


async def list_tags(ctx: Context) -> Response:
    """The repository's tags, sorted; NAME_UNKNOWN for a repository that holds nothing."""
    name, meta = ctx.name, ctx.services.metadata
    n, last = pagination(ctx.request)
    if not meta.repository_exists(name):
        raise RegistryError(NAME_UNKNOWN, f"repository {name!r} is not known",
                            detail={"name": name})
    headers: dict[str, str] = {}
    if n == 0:
        tags: list[str] = []
    else:
        tags = meta.tags(name, last, None if n is None else n + 1)
        if n is not None and len(tags) > n:
            tags = tags[:n]
            headers["Link"] = next_link(f"/v2/{name}/tags/list", n, tags[-1])
    return json_response({"name": name, "tags": tags}, headers=headers)
