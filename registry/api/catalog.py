"""GET /v2/_catalog: repositories the caller may pull, sorted, with n/last pagination."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from registry.api.base import json_response, next_link, pagination, services
from registry.db.repositories import RepositoryStore


async def catalog(request: Request) -> Response:
    svc = services(request)
    await svc.access.require_catalog(request)
    n, last = pagination(request)
    names: list[str] = []
    more = False
    async with svc.db.read() as session:
        store = RepositoryStore(session)
        cursor = last
        # Filter page by page: the caller may see only some repositories.
        while n is None or len(names) <= n:
            batch_size = 1000 if n is None else max(n + 1 - len(names), 100)
            batch = await store.catalog(batch_size, cursor)
            names.extend(await svc.access.visible(request, batch))
            if len(batch) < batch_size:
                break
            cursor = batch[-1]
    headers = {}
    if n is not None and len(names) > n:
        names, more = names[:n], True
    if more and names:
        headers["Link"] = next_link("/v2/_catalog", n or 0, names[-1])
    return json_response({"repositories": names}, headers=headers)
