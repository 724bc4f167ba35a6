"""The registry side of token auth: every /v2 request carries a Bearer JWT that must cover it.

Missing or invalid tokens get 401 with the challenge that tells the client where to get one;
a valid token lacking the action gets 401 ``insufficient_scope``, as Distribution answers.
The check runs before any handler touches metadata, and answers the same whether or not the
repository exists, so a refusal reveals nothing about other tenants.
"""

from __future__ import annotations

from starlette.requests import Request

from registry import errors
from registry.auth import audit
from registry.auth.access import Action
from registry.auth.policy import readable_tenants, resolve_subject
from registry.auth.scopes import challenge
from registry.auth.tokens import Claims, InvalidToken, TokenIssuer
from registry.db.session import Database
from registry.oci.names import tenant_of


class TokenAccess:
    def __init__(self, issuer: TokenIssuer, db: Database, realm: str) -> None:
        self.issuer, self.db, self.realm = issuer, db, realm

    def _refuse(
        self, request: Request, scope: str | None, error: str | None, message: str
    ) -> errors.RegistryError:
        if error is not None:
            audit.record(
                "access",
                "denied",
                target=scope,
                client=request.client.host if request.client else None,
                reason=error,
                method=request.method,
                path=request.url.path[:300],
            )
        return errors.UNAUTHORIZED(
            message=message,
            headers={"WWW-Authenticate": challenge(self.realm, self.issuer.service, scope, error)},
        )

    def _claims(self, request: Request, scope: str | None) -> Claims:
        header = request.headers.get("authorization", "")
        if header[:7].lower() != "bearer ":
            raise self._refuse(request, scope, None, "authentication required")
        try:
            return self.issuer.verify(header[7:].strip())
        except InvalidToken as exc:
            raise self._refuse(request, scope, "invalid_token", f"invalid token: {exc}") from exc

    async def require_base(self, request: Request) -> None:
        self._claims(request, None)

    async def require(self, request: Request, repository: str, actions: frozenset[Action]) -> None:
        scope = f"repository:{repository}:{','.join(sorted(actions))}"
        claims = self._claims(request, scope)
        if not claims.allows("repository", repository, frozenset(actions)):
            raise self._refuse(
                request, scope, "insufficient_scope", "the token does not grant this access"
            )
        request.state.subject = claims.subject

    async def allows(self, request: Request, repository: str, action: Action) -> bool:
        try:
            claims = self._claims(request, None)
        except errors.RegistryError:
            return False
        return claims.allows("repository", repository, frozenset({action}))

    async def require_catalog(self, request: Request) -> None:
        scope = "registry:catalog:*"
        claims = self._claims(request, scope)
        if not claims.allows("registry", "catalog", frozenset({"*"})):
            raise self._refuse(
                request, scope, "insufficient_scope", "the token does not grant the catalog"
            )
        request.state.subject = claims.subject

    async def visible(self, request: Request, repositories: list[str]) -> list[str]:
        subject = getattr(request.state, "subject", None)
        if subject is None:
            return []
        async with self.db.read() as session:
            identity = await resolve_subject(session, subject)
            if identity is None:
                return []
            tenants = await readable_tenants(session, identity)
        if tenants is None:
            return repositories
        return [r for r in repositories if tenant_of(r) in tenants]
