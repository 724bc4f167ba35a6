"""create_app(settings): the Starlette application with its routes, middleware and lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry import errors
from registry.auth import audit
from registry.auth.access import AccessPolicy, OpenAccess
from registry.auth.bearer import TokenAccess
from registry.auth.keys import load_keys
from registry.auth.login import Authenticator
from registry.auth.tokens import TokenIssuer
from registry.context import Services
from registry.db.session import Database
from registry.gc.uploads import expire_uploads
from registry.routes import ROUTES
from registry.settings import Settings
from registry.storage.blobs import BlobContent
from registry.storage.driver import StorageDriver, StorageUnavailable
from registry.storage.filesystem import FilesystemDriver
from registry.storage.uploads import UploadData

log = logging.getLogger(__name__)

_API_VERSION = (b"docker-distribution-api-version", b"registry/2.0")


class ApiVersionHeader:
    """Every answer names the API version; clients probe /v2/ for it. Pure ASGI: no per-request
    task or body copy, unlike BaseHTTPMiddleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k == _API_VERSION[0] for k, _ in headers):
                    headers.append(_API_VERSION)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_header)


def build_driver(settings: Settings) -> StorageDriver:
    if settings.storage.driver == "s3":
        # Imported here: boto3 takes a while to load, and a filesystem registry never needs it.
        from registry.storage.s3 import S3Driver

        return S3Driver.from_settings(settings.storage.s3)
    return FilesystemDriver(settings.storage_root)


def build_services(settings: Settings) -> Services:
    driver = build_driver(settings)
    db = Database(
        settings.database_url, echo=settings.database.echo, pool_size=settings.database.pool_size
    )
    access: AccessPolicy = OpenAccess()
    tokens = authenticator = None
    if settings.auth.mode == "token":
        auth = settings.auth
        keys = load_keys(
            settings.keys_path, auth.algorithm, auth.signing_key, auth.verification_keys
        )
        tokens = TokenIssuer(keys, auth.issuer, auth.service, auth.token_ttl_seconds)
        authenticator = Authenticator(db, keys.pepper, auth.throttle)
        access = TokenAccess(tokens, db, f"{settings.external_url}/auth/token")
        audit.configure(auth.audit_log or str(settings.data_path / "audit.log"))
    return Services(
        settings=settings,
        db=db,
        driver=driver,
        blobs=BlobContent(driver),
        uploads=UploadData(driver),
        access=access,
        tokens=tokens,
        authenticator=authenticator,
    )


async def _registry_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.RegistryError)
    return exc.to_response(head=request.method == "HEAD")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = errors.NOT_FOUND if exc.status_code == 404 else errors.METHOD_UNKNOWN
    # Keep Starlette's headers: a 405 must name the allowed methods in Allow.
    return code(status=exc.status_code, headers=dict(exc.headers or {})).to_response(
        head=request.method == "HEAD"
    )


async def _client_gone(request: Request, exc: Exception) -> Response:
    # Nobody is listening; the upload's partial chunk is discarded on its next resume.
    return errors.BLOB_UPLOAD_INVALID(message="client disconnected").to_response()


async def _storage_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("storage unavailable: %s", exc)
    return errors.UNAVAILABLE(message="storage is unavailable, try again").to_response(
        head=request.method == "HEAD"
    )


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    # OperationalError: the database could not be reached or dropped the connection (or asked
    # for a retry: deadlock, serialization failure). A client retry is the right answer.
    log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)
    return errors.UNAVAILABLE(message="database is unavailable, try again").to_response(
        head=request.method == "HEAD"
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return errors.INTERNAL().to_response(head=request.method == "HEAD")


def create_app(settings: Settings, services: Services | None = None) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        svc = services or build_services(settings)
        app.state.services = svc
        sweeper = asyncio.create_task(_sweep_uploads(svc))
        try:
            yield {}
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await svc.driver.close()
            await svc.db.dispose()

    app = Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        exception_handlers={
            errors.RegistryError: _registry_error,
            HTTPException: _http_error,
            ClientDisconnect: _client_gone,
            StorageUnavailable: _storage_unavailable,
            OperationalError: _database_unavailable,
            Exception: _unexpected,
        },
    )
    app.add_middleware(ApiVersionHeader)
    return app


async def _sweep_uploads(svc: Services) -> None:
    interval = svc.settings.uploads.sweep_interval_seconds
    while True:
        try:
            await expire_uploads(svc)
        except Exception:
            log.exception("upload expiry sweep failed; retrying next interval")
        await asyncio.sleep(interval)
