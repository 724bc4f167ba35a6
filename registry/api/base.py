"""What every /v2 handler shares: services, names and digests from the path, pagination."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from registry import errors, jsonbody
from registry.auth.access import Action, actions_for
from registry.context import Services
from registry.oci.digest import Digest
from registry.oci.names import validate_name


def services(request: Request) -> Services:
    return request.app.state.services


async def authorized_repository(request: Request, actions: frozenset[Action] | None = None) -> str:
    """The repository named in the path, validated, once the caller's access is checked.

    Runs before any metadata or storage work, so a refused caller learns nothing.
    """
    name = validate_name(request.path_params["name"])
    await services(request).access.require(
        request, name, actions if actions is not None else actions_for(request.method)
    )
    return name


def path_digest(request: Request, key: str = "digest") -> Digest:
    return Digest.parse(request.path_params[key])


def pagination(request: Request) -> tuple[int | None, str | None]:
    raw_n = request.query_params.get("n")
    last = request.query_params.get("last") or None
    if raw_n is None or raw_n == "":
        return None, last
    try:
        n = int(raw_n)
    except ValueError:
        n = -1
    if n < 0:
        raise errors.PAGINATION_INVALID({"n": raw_n[:50]})
    return n, last


def next_link(path: str, n: int, last: str) -> str:
    return f'<{path}?{urlencode({"n": n, "last": last})}>; rel="next"'


def json_response(
    body: object,
    status: int = 200,
    headers: dict[str, str] | None = None,
    media_type: str = "application/json",
) -> Response:
    return Response(jsonbody.dumps(body), status, headers, media_type=media_type)


def empty(status: int, headers: dict[str, str] | None = None) -> Response:
    response = Response(b"", status, headers)
    response.headers["Content-Length"] = "0"
    return response
