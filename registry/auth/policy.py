"""The one place that decides what an identity may do.

Token issuance grants the intersection of what is asked and what ``permitted`` allows; the
catalog shows what ``readable_tenants`` allows. Nothing else in Berth reasons about roles.

- A repository belongs to the tenant named by its first path component. A tenant that does not
  exist grants nothing to anyone, so nobody pushes into a tenant that was never created.
- Site admins may do everything in every tenant.
- Members act by role: reader pulls, writer pulls and pushes, admin also deletes.
- Robots act within their own tenant, with the actions they were created with.
- Public tenants may be pulled by anyone, anonymous callers included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from registry.auth.access import Action
from registry.auth.scopes import CATALOG, Scope
from registry.db.identities import IdentityStore, RobotRecord, UserRecord
from registry.db.models import utcnow
from registry.oci.names import NAME_RE, tenant_of

ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "reader": frozenset({Action.PULL}),
    "writer": frozenset({Action.PULL, Action.PUSH}),
    "admin": frozenset({Action.PULL, Action.PUSH, Action.DELETE}),
}
ROBOT_ACTIONS = frozenset({Action.PULL, Action.PUSH})
ALL_ACTIONS = frozenset({Action.PULL, Action.PUSH, Action.DELETE})


@dataclass(frozen=True, slots=True)
class Identity:
    kind: Literal["user", "robot", "anonymous"]
    subject: str = ""
    id: int | None = None
    is_admin: bool = False
    tenant: str | None = None
    robot_actions: frozenset[str] = field(default_factory=frozenset)
    # A robot's expiry (UTC), checked again whenever a decision about it is reused.
    expires_at: datetime | None = None

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


ANONYMOUS = Identity("anonymous")


def user_identity(user: UserRecord) -> Identity:
    return Identity("user", user.name, user.id, is_admin=user.is_admin)


def robot_identity(robot: RobotRecord) -> Identity:
    expires = robot.expires_at
    if expires is not None and expires.tzinfo is None:  # SQLite hands back naive datetimes
        expires = expires.replace(tzinfo=UTC)
    return Identity(
        "robot",
        robot.username,
        robot.id,
        tenant=robot.tenant,
        robot_actions=robot.actions,
        expires_at=expires,
    )


async def permitted(session: AsyncSession, identity: Identity, repository: str) -> frozenset[str]:
    """The actions ``identity`` may do on ``repository`` right now."""
    if not NAME_RE.fullmatch(repository):
        return frozenset()
    store = IdentityStore(session)
    tenant = await store.tenant(tenant_of(repository))
    if tenant is None:
        return frozenset()
    if identity.is_admin:
        return ALL_ACTIONS
    actions: set[str] = {Action.PULL} if tenant.public else set()
    if identity.kind == "user" and identity.id is not None:
        role = await store.role(tenant.id, identity.id)
        if role is not None:
            actions |= ROLE_ACTIONS.get(role, frozenset())
    elif identity.kind == "robot" and identity.tenant == tenant.name:
        actions |= identity.robot_actions & ROBOT_ACTIONS
    return frozenset(actions)


async def grant(session: AsyncSession, identity: Identity, scopes: list[Scope]) -> list[Scope]:
    """What a token for ``identity`` asking for ``scopes`` carries (possibly nothing)."""
    known: dict[str, frozenset[str]] = {}
    for scope in scopes:
        if scope.type == "repository" and scope.name not in known:
            known[scope.name] = await permitted(session, identity, scope.name)
    return [_granted(identity, scope, known) for scope in scopes]


class GrantCache:
    """``grant``'s answers, reused while the identity tables are unchanged.

    An answer holds for the identity generation it was decided under (models.IdentityGeneration,
    raised by every change to a tenant, user, membership or robot, from any process). A pull
    storm asks the same question thousands of times a second; each answer otherwise costs an
    indexed lookup or two.
    """

    _SIZE = 4096

    def __init__(self) -> None:
        self._generation: int | None = None
        self._answers: dict[tuple[Identity, tuple[Scope, ...]], list[Scope]] = {}

    async def grant(
        self, session: AsyncSession, identity: Identity, scopes: list[Scope], generation: int | None
    ) -> list[Scope]:
        """``grant(session, identity, scopes)``; ``generation`` read before anything else in
        the session, so whatever the session reads is at least as new."""
        if generation is None:
            return await grant(session, identity, scopes)
        if generation != self._generation:
            if self._generation is not None and generation < self._generation:
                # A reader that started before the latest change: no going back.
                return await grant(session, identity, scopes)
            self._generation = generation
            self._answers.clear()
        key = (identity, tuple(scopes))
        answer = self._answers.get(key)
        if answer is None:
            answer = await grant(session, identity, scopes)
            if self._generation == generation:  # else it moved on while we read
                if len(self._answers) >= self._SIZE:
                    self._answers.clear()
                self._answers[key] = answer
        return answer


def _granted(identity: Identity, scope: Scope, known: dict[str, frozenset[str]]) -> Scope:
    if scope.type == "repository":
        actions = scope.actions & known.get(scope.name, frozenset())
    elif (scope.type, scope.name) == CATALOG and not identity.anonymous:
        # Every signed-in caller may ask; the catalog lists only what they may pull.
        actions = scope.actions & {"*"}
    else:
        actions = frozenset()
    return Scope(scope.type, scope.name, frozenset(actions))


async def readable_tenants(session: AsyncSession, identity: Identity) -> set[str] | None:
    """Tenants whose repositories ``identity`` may pull; None means all of them."""
    if identity.is_admin:
        return None
    store = IdentityStore(session)
    tenants = await store.public_tenants()
    if identity.kind == "user" and identity.id is not None:
        tenants |= set(await store.user_tenants(identity.id))
    elif identity.kind == "robot" and identity.tenant and Action.PULL in identity.robot_actions:
        tenants.add(identity.tenant)
    return tenants


async def resolve_subject(session: AsyncSession, subject: str) -> Identity | None:
    """The live identity behind a token's ``sub``; None if deleted, disabled or expired."""
    if not subject:
        return ANONYMOUS
    store = IdentityStore(session)
    if "+" in subject:
        tenant, _, name = subject.partition("+")
        robot = await store.robot(tenant, name)
        return robot_identity(robot) if robot and robot.usable(utcnow()) else None
    user = await store.user(subject)
    return user_identity(user) if user and not user.disabled else None
