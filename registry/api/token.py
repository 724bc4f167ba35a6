"""The token service: GET and POST /auth/token (Docker token auth and its OAuth2 form), and
the public keys that verify its tokens (/auth/jwks)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from registry import errors
from registry.api.base import json_response
from registry.auth import audit
from registry.auth.login import BadCredentials, Credentials, parse_basic
from registry.auth.policy import ANONYMOUS, Identity, grant
from registry.auth.scopes import Scope, parse_scopes
from registry.context import Services
from registry.db.identities import IdentityStore


def _svc(request: Request) -> Services:
    svc: Services = request.app.state.services
    if svc.tokens is None or svc.authenticator is None:
        raise errors.NOT_FOUND(message="token authentication is off (auth.mode: none)")
    return svc


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def _unauthorized(message: str) -> errors.RegistryError:
    return errors.UNAUTHORIZED(message=message, headers={"WWW-Authenticate": 'Basic realm="berth"'})


def _check_service(svc: Services, service: str | None) -> None:
    if service and service != svc.settings.auth.service:
        raise errors.RegistryError(
            errors.DENIED,
            {"service": service[:100]},
            message=f"unknown service {service[:100]!r}",
            status=400,
        )


async def _identity_and_grants(
    svc: Services, credentials: Credentials | None, client: str | None, scopes: list[Scope]
) -> tuple[Identity, list[Scope]]:
    """Who the credentials prove (anonymous without any) and what they are granted. Credentials
    proved recently take one read block: a pull storm asks for thousands of tokens a second."""
    authenticator = svc.authenticator
    assert authenticator is not None
    async with svc.db.read() as session:
        # First: all read after it is at least as new (GrantCache, Authenticator.cached).
        generation = await IdentityStore(session).generation()
        identity = (
            ANONYMOUS
            if credentials is None
            else await authenticator.cached(credentials, client, session, generation)
        )
        if identity is not None:
            if credentials is not None:
                audit.record("login", "success", actor=identity.subject, client=client)
            return identity, await svc.grants.grant(session, identity, scopes, generation)
    assert credentials is not None
    # Outside the read block: a password's argon2 check must not hold a database connection.
    try:
        identity = await authenticator.verify(credentials, client, generation)
    except BadCredentials as exc:
        raise _unauthorized("invalid username or password") from exc
    audit.record("login", "success", actor=identity.subject, client=client)
    async with svc.db.read() as session:
        return identity, await svc.grants.grant(session, identity, scopes, generation)


@functools.lru_cache(maxsize=16)
def _rfc3339(seconds: int) -> str:
    # Reused tokens share their issued_at: formatting it once saves a few us per answer.
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _answer(
    svc: Services,
    identity: Identity,
    scopes: list[Scope],
    granted: list[Scope],
    client: str | None,
    refresh_token: str | None,
) -> Response:
    assert svc.tokens is not None
    token, issued_at, expires_in = svc.tokens.issue(identity.subject, granted)
    audit.record(
        "token",
        "issued",
        actor=identity.subject or "anonymous",
        client=client,
        requested=[str(s) for s in scopes],
        granted=[str(s) for s in granted if s.actions],
    )
    body: dict[str, object] = {
        "token": token,
        "access_token": token,
        "expires_in": expires_in,
        "issued_at": _rfc3339(issued_at),
    }
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    return json_response(body)


async def get_token(request: Request) -> Response:
    """The Docker token flow: Basic credentials (or none, for anonymous pulls) and scopes."""
    svc = _svc(request)
    params = request.query_params
    _check_service(svc, params.get("service"))
    try:
        credentials = parse_basic(request.headers.get("authorization"))
    except BadCredentials as exc:
        raise _unauthorized(str(exc)) from exc
    client = _client(request)
    scopes = parse_scopes(params.getlist("scope"))
    identity, granted = await _identity_and_grants(svc, credentials, client, scopes)
    refresh = None
    if params.get("offline_token", "").lower() == "true" and not identity.anonymous:
        assert svc.authenticator is not None
        refresh = await svc.authenticator.new_refresh_token(identity)
    return _answer(svc, identity, scopes, granted, client, refresh)


async def post_token(request: Request) -> Response:
    """The OAuth2 form containerd and docker use: password and refresh_token grants."""
    svc = _svc(request)
    assert svc.authenticator is not None
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    _check_service(svc, fields.get("service"))
    scopes = parse_scopes([fields.get("scope", "")])
    client = _client(request)
    grant_type = fields.get("grant_type", "")
    refresh: str | None = None
    if grant_type == "password":
        username, password = fields.get("username"), fields.get("password")
        if not username or password is None:
            raise errors.RegistryError(
                errors.UNAUTHORIZED, message="username and password are required", status=400
            )
        identity, granted = await _identity_and_grants(
            svc, Credentials(username, password), client, scopes
        )
        if fields.get("access_type") == "offline":
            refresh = await svc.authenticator.new_refresh_token(identity)
    elif grant_type == "refresh_token":
        token = fields.get("refresh_token", "")
        found = (
            await svc.authenticator.from_refresh_token(
                token, svc.settings.auth.refresh_token_ttl_days
            )
            if token
            else None
        )
        if found is None:
            audit.record("login", "failure", client=client, grant="refresh_token")
            raise _unauthorized("invalid or revoked refresh token")
        identity = found
        async with svc.db.read() as session:
            granted = await grant(session, identity, scopes)
        # Refresh tokens are reusable, not rotated: docker keeps the one it was given.
        refresh = token
    else:
        raise errors.RegistryError(
            errors.UNSUPPORTED,
            {"grant_type": grant_type[:50]},
            message="grant_type must be password or refresh_token",
            status=400,
        )
    return _answer(svc, identity, scopes, granted, client, refresh)


async def jwks(request: Request) -> Response:
    tokens = _svc(request).tokens
    assert tokens is not None
    return json_response(tokens.keys.jwks())
