"""The token service: GET and POST /auth/token (Docker token auth and its OAuth2 form), and
the public keys that verify its tokens (/auth/jwks)."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry import errors
from registry.auth import audit
from registry.auth.login import BadCredentials, Credentials, parse_basic
from registry.auth.policy import ANONYMOUS, Identity, grant
from registry.auth.scopes import Scope, parse_scopes
from registry.context import Services


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


async def _answer(
    request: Request, identity: Identity, scopes: list[Scope], refresh_token: str | None
) -> Response:
    svc = _svc(request)
    async with svc.db.read() as session:
        granted = await grant(session, identity, scopes)
    assert svc.tokens is not None
    token, issued_at, expires_in = svc.tokens.issue(identity.subject, granted)
    audit.record(
        "token",
        "issued",
        actor=identity.subject or "anonymous",
        client=_client(request),
        requested=[str(s) for s in scopes],
        granted=[str(s) for s in granted if s.actions],
    )
    body: dict[str, object] = {
        "token": token,
        "access_token": token,
        "expires_in": expires_in,
        "issued_at": datetime.fromtimestamp(issued_at, UTC).isoformat().replace("+00:00", "Z"),
    }
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    return JSONResponse(body)


async def _login(request: Request, credentials: Credentials) -> Identity:
    svc = _svc(request)
    try:
        assert svc.authenticator is not None
        identity = await svc.authenticator.login(credentials, _client(request))
    except BadCredentials as exc:
        raise _unauthorized("invalid username or password") from exc
    audit.record("login", "success", actor=identity.subject, client=_client(request))
    return identity


async def get_token(request: Request) -> Response:
    """The Docker token flow: Basic credentials (or none, for anonymous pulls) and scopes."""
    svc = _svc(request)
    params = request.query_params
    _check_service(svc, params.get("service"))
    try:
        credentials = parse_basic(request.headers.get("authorization"))
    except BadCredentials as exc:
        raise _unauthorized(str(exc)) from exc
    identity = ANONYMOUS if credentials is None else await _login(request, credentials)
    refresh = None
    if params.get("offline_token", "").lower() == "true" and not identity.anonymous:
        refresh = await svc.authenticator.new_refresh_token(identity)
    return await _answer(request, identity, parse_scopes(params.getlist("scope")), refresh)


async def post_token(request: Request) -> Response:
    """The OAuth2 form containerd and docker use: password and refresh_token grants."""
    svc = _svc(request)
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    _check_service(svc, fields.get("service"))
    scopes = parse_scopes([fields.get("scope", "")])
    grant_type = fields.get("grant_type", "")
    refresh: str | None = None
    if grant_type == "password":
        username, password = fields.get("username"), fields.get("password")
        if not username or password is None:
            raise errors.RegistryError(
                errors.UNAUTHORIZED, message="username and password are required", status=400
            )
        identity = await _login(request, Credentials(username, password))
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
            audit.record("login", "failure", client=_client(request), grant="refresh_token")
            raise _unauthorized("invalid or revoked refresh token")
        identity = found
        # Refresh tokens are reusable, not rotated: docker keeps the one it was given.
        refresh = token
    else:
        raise errors.RegistryError(
            errors.UNSUPPORTED,
            {"grant_type": grant_type[:50]},
            message="grant_type must be password or refresh_token",
            status=400,
        )
    return await _answer(request, identity, scopes, refresh)


async def jwks(request: Request) -> Response:
    tokens = _svc(request).tokens
    assert tokens is not None
    return JSONResponse(tokens.keys.jwks())
