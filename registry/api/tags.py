"""GET /v2/<name>/tags/list, sorted, with n/last pagination."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from registry import errors
from registry.api.base import (
    authorized_repository,
    json_response,
    next_link,
    pagination,
    services,
)
from registry.db.repositories import RepositoryStore
from registry.db.tags import TagStore


async def list_tags(request: Request) -> Response:
    name = await authorized_repository(request)
    n, last = pagination(request)
    async with services(request).db.read() as session:
        repo_id = await RepositoryStore(session).get_id(name)
        if repo_id is None:
            raise errors.NAME_UNKNOWN({"name": name})
        # One more than asked tells whether a next page exists.
        tags = await TagStore(session).list(repo_id, None if n is None else n + 1, last)
    headers = {}
    if n is not None and len(tags) > n:
        tags = tags[:n]
        if tags:
            headers["Link"] = next_link(f"/v2/{name}/tags/list", n, tags[-1])
    return json_response({"name": name, "tags": tags}, headers=headers)
