"""The whole URL table.

Repository names contain slashes, so ``{name:repo}`` matches any run of characters and the
handler validates it (an invalid name must answer NAME_INVALID, not a routing 404).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from registry import errors
from registry.api import (
    admin,
    blobs,
    catalog,
    health,
    manifests,
    referrers,
    tags,
    token,
    uploads,
)
from registry.api.base import json_response

Endpoint = Callable[[Request], Awaitable[Response]]


class RepositoryConvertor(Convertor[str]):
    regex = r"[^?#]+?"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("repo", RepositoryConvertor())


async def api_version(request: Request) -> Response:
    await request.app.state.services.access.require_base(request)
    return json_response({})


def resource(path: str, **handlers: Endpoint) -> Route:
    """One route per path, dispatching on the method itself.

    Starlette would answer HEAD with a GET route's handler; manifests and blobs need their own.
    """

    async def dispatch(request: Request) -> Response:
        handler = handlers.get(request.method)
        if handler is None and request.method == "HEAD":
            handler = handlers.get("GET")
        if handler is None:
            raise errors.METHOD_UNKNOWN(
                {"method": request.method, "allowed": sorted(handlers)},
                message=f"method {request.method} is not allowed here",
                headers={"Allow": ", ".join(sorted(handlers))},
            )
        return await handler(request)

    return Route(path, dispatch, methods=list(handlers))


N = "/v2/{name:repo}"

ROUTES: list[BaseRoute] = [
    resource("/v2/", GET=api_version, HEAD=api_version),
    # Routes are tried in order: a pull storm's token requests should not try every /v2 route.
    resource("/auth/token", GET=token.get_token, POST=token.post_token),
    resource("/v2/_catalog", GET=catalog.catalog),
    resource(N + "/tags/list", GET=tags.list_tags),
    resource(
        N + "/manifests/{reference}",
        GET=manifests.get_manifest,
        HEAD=manifests.head_manifest,
        PUT=manifests.put_manifest,
        DELETE=manifests.delete_manifest,
    ),
    resource(N + "/blobs/uploads/", POST=uploads.start_upload),
    resource(
        N + "/blobs/uploads/{uuid}",
        GET=uploads.upload_status,
        PATCH=uploads.patch_upload,
        PUT=uploads.finish_upload,
        DELETE=uploads.cancel_upload,
    ),
    resource(
        N + "/blobs/{digest}",
        GET=blobs.get_blob,
        HEAD=blobs.head_blob,
        DELETE=blobs.delete_blob,
    ),
    resource(N + "/referrers/{digest}", GET=referrers.list_referrers),
    resource("/health/live", GET=health.live),
    resource("/health/ready", GET=health.ready),
    resource("/auth/jwks", GET=token.jwks),
    resource("/api/v1/tenants", GET=admin.list_tenants, POST=admin.create_tenant),
    resource("/api/v1/tenants/{tenant}", PATCH=admin.update_tenant, DELETE=admin.delete_tenant),
    resource("/api/v1/tenants/{tenant}/members", GET=admin.list_members),
    resource(
        "/api/v1/tenants/{tenant}/members/{user}",
        PUT=admin.set_member,
        DELETE=admin.remove_member,
    ),
    resource("/api/v1/tenants/{tenant}/robots", GET=admin.list_robots, POST=admin.create_robot),
    resource(
        "/api/v1/tenants/{tenant}/robots/{robot}",
        PATCH=admin.update_robot,
        DELETE=admin.delete_robot,
    ),
    resource("/api/v1/tenants/{tenant}/robots/{robot}/secret", POST=admin.rotate_robot_secret),
    resource("/api/v1/users", GET=admin.list_users, POST=admin.create_user),
    resource("/api/v1/users/{user}", PATCH=admin.update_user, DELETE=admin.delete_user),
]
