"""The JSON administration API under /api/v1: tenants, users, members and robots.

Callers authenticate with any Bearer token from /auth/token; the token's subject is resolved to
a live identity on every request, so a disabled account or a revoked site admin loses its
rights at once. What the identity may do is decided by :mod:`registry.admin.operations`, shared
with the CLI. Without token authentication (``auth.mode: none``) there are no identities and
the API answers 404.

Errors use the registry's envelope: 400 invalid input, 401 no or bad token, 403 forbidden,
404 not found (also for tenants the caller is not a member of, existing or not), 409 conflict.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry import errors
from registry.admin.operations import (
    Admin,
    AdminError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    RobotCredentials,
    parse_expiry,
)
from registry.auth.policy import resolve_subject
from registry.auth.scopes import challenge
from registry.auth.tokens import InvalidToken
from registry.context import Services

MAX_BODY = 64 * 1024


def _error(exc: AdminError) -> errors.RegistryError:
    message = str(exc)
    if isinstance(exc, NotFound):
        return errors.NOT_FOUND(message=message)
    if isinstance(exc, Forbidden):
        return errors.DENIED(message=message)
    if isinstance(exc, Conflict):
        return errors.RegistryError(errors.UNSUPPORTED, message=message, status=409)
    if isinstance(exc, Invalid):
        return errors.RegistryError(errors.UNSUPPORTED, message=message, status=400)
    return errors.INTERNAL(message=message)


def _unauthorized(svc: Services, message: str, error: str | None = None) -> errors.RegistryError:
    realm = f"{svc.settings.external_url}/auth/token"
    return errors.UNAUTHORIZED(
        message=message,
        headers={"WWW-Authenticate": challenge(realm, svc.settings.auth.service, None, error)},
    )


async def _admin(request: Request) -> Admin:
    """The operations, acting as the identity behind the request's Bearer token."""
    svc: Services = request.app.state.services
    if svc.tokens is None or svc.authenticator is None:
        raise errors.NOT_FOUND(message="the admin API needs token authentication (auth.mode)")
    header = request.headers.get("authorization", "")
    if header[:7].lower() != "bearer ":
        raise _unauthorized(svc, "authentication required")
    try:
        claims = svc.tokens.verify(header[7:].strip())
    except InvalidToken as exc:
        raise _unauthorized(svc, f"invalid token: {exc}", "invalid_token") from exc
    if not claims.subject:
        raise _unauthorized(svc, "authentication required")
    async with svc.db.read() as session:
        identity = await resolve_subject(session, claims.subject)
    if identity is None:
        raise _unauthorized(svc, "the token's account is disabled or gone", "invalid_token")
    return Admin(
        svc.db,
        identity,
        pepper=svc.authenticator.pepper,
        client=request.client.host if request.client else None,
    )


Endpoint = Callable[[Request], Awaitable[Response]]
Operation = Callable[[Admin, Request], Awaitable[Response]]


def endpoint(operation: Operation) -> Endpoint:
    """Authenticate, run the operation, and answer its typed errors with the JSON envelope."""

    async def handle(request: Request) -> Response:
        admin = await _admin(request)
        try:
            return await operation(admin, request)
        except AdminError as exc:
            raise _error(exc) from exc

    handle.__name__ = handle.__qualname__ = operation.__name__
    handle.__doc__ = operation.__doc__
    return handle


async def _body(request: Request, allowed: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """The request's JSON object, holding only ``allowed`` keys of the given types."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise Invalid("request body too large")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(k[:50] for k in unknown[:10])}")
    for key, kind in allowed.items():
        value = body.get(key)
        if value is None:
            continue
        # bool is an int in Python; JSON true is never a number here.
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise Invalid(f"field {key!r} has the wrong type")
    return body


def _required(body: dict[str, Any], key: str) -> Any:
    if body.get(key) is None:
        raise Invalid(f"field {key!r} is required")
    return body[key]


def _json(value: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(
        dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value, status
    )


def _list(key: str, items: list[Any]) -> JSONResponse:
    return JSONResponse({key: [dataclasses.asdict(i) for i in items]})


def _credentials(credentials: RobotCredentials, status: int) -> JSONResponse:
    return JSONResponse(
        {
            "robot": dataclasses.asdict(credentials.robot),
            "username": credentials.username,
            "secret": credentials.secret,
        },
        status,
        headers={"Cache-Control": "no-store"},
    )


def _path(request: Request, key: str) -> str:
    return str(request.path_params[key])


# --- tenants


@endpoint
async def list_tenants(admin: Admin, request: Request) -> Response:
    return _list("tenants", await admin.list_tenants())


@endpoint
async def create_tenant(admin: Admin, request: Request) -> Response:
    body = await _body(request, {"name": str, "public": bool})
    tenant = await admin.create_tenant(_required(body, "name"), public=bool(body.get("public")))
    return _json(tenant, 201)


@endpoint
async def update_tenant(admin: Admin, request: Request) -> Response:
    body = await _body(request, {"public": bool})
    return _json(await admin.set_tenant_public(_path(request, "tenant"), _required(body, "public")))


@endpoint
async def delete_tenant(admin: Admin, request: Request) -> Response:
    await admin.delete_tenant(_path(request, "tenant"))
    return Response(status_code=204)


# --- users


@endpoint
async def list_users(admin: Admin, request: Request) -> Response:
    return _list("users", await admin.list_users())


@endpoint
async def create_user(admin: Admin, request: Request) -> Response:
    body = await _body(request, {"name": str, "password": str, "is_admin": bool})
    user = await admin.create_user(
        _required(body, "name"), _required(body, "password"), is_admin=bool(body.get("is_admin"))
    )
    return _json(user, 201)


@endpoint
async def update_user(admin: Admin, request: Request) -> Response:
    body = await _body(request, {"password": str, "is_admin": bool, "disabled": bool})
    user = await admin.update_user(
        _path(request, "user"),
        password=body.get("password"),
        is_admin=body.get("is_admin"),
        disabled=body.get("disabled"),
    )
    return _json(user)


@endpoint
async def delete_user(admin: Admin, request: Request) -> Response:
    await admin.delete_user(_path(request, "user"))
    return Response(status_code=204)


# --- members


@endpoint
async def list_members(admin: Admin, request: Request) -> Response:
    return _list("members", await admin.list_members(_path(request, "tenant")))


@endpoint
async def set_member(admin: Admin, request: Request) -> Response:
    body = await _body(request, {"role": str})
    member = await admin.set_member(
        _path(request, "tenant"), _path(request, "user"), _required(body, "role")
    )
    return _json(member)


@endpoint
async def remove_member(admin: Admin, request: Request) -> Response:
    await admin.remove_member(_path(request, "tenant"), _path(request, "user"))
    return Response(status_code=204)


# --- robots


@endpoint
async def list_robots(admin: Admin, request: Request) -> Response:
    return _list("robots", await admin.list_robots(_path(request, "tenant")))


@endpoint
async def create_robot(admin: Admin, request: Request) -> Response:
    """Body: ``name``, ``actions`` (["pull"] or ["pull", "push"], or "pull,push"), and
    optionally ``expires_in`` ("30d", or an ISO date). The secret is in this answer only."""
    body = await _body(request, {"name": str, "actions": (list, str), "expires_in": str})
    actions = _required(body, "actions")
    if isinstance(actions, list) and not all(isinstance(a, str) for a in actions):
        raise Invalid("field 'actions' must list strings")
    expires = body.get("expires_in")
    credentials = await admin.create_robot(
        _path(request, "tenant"),
        _required(body, "name"),
        actions,
        expires_at=parse_expiry(expires) if expires else None,
    )
    return _credentials(credentials, 201)


@endpoint
async def update_robot(admin: Admin, request: Request) -> Response:
    body = await _body(request, {"disabled": bool})
    robot = await admin.set_robot_disabled(
        _path(request, "tenant"), _path(request, "robot"), _required(body, "disabled")
    )
    return _json(robot)


@endpoint
async def delete_robot(admin: Admin, request: Request) -> Response:
    await admin.delete_robot(_path(request, "tenant"), _path(request, "robot"))
    return Response(status_code=204)


@endpoint
async def rotate_robot_secret(admin: Admin, request: Request) -> Response:
    credentials = await admin.rotate_robot_secret(_path(request, "tenant"), _path(request, "robot"))
    return _credentials(credentials, 200)
