"""Tenants, users, memberships, robots, refresh tokens and failed-login records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from registry.db.models import (
    LoginFailure,
    Membership,
    RefreshToken,
    Robot,
    Tenant,
    User,
    utcnow,
)
from registry.db.session import as_datetime, fetch_one


class Conflict(Exception):
    """The record already exists."""


@dataclass(frozen=True, slots=True)
class TenantRecord:
    id: int
    name: str
    public: bool


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    name: str
    password_hash: str
    is_admin: bool
    disabled: bool


@dataclass(frozen=True, slots=True)
class RobotRecord:
    id: int
    tenant: str
    name: str
    secret_hash: str
    actions: frozenset[str]
    expires_at: datetime | None
    disabled: bool

    @property
    def username(self) -> str:
        return robot_username(self.tenant, self.name)

    def usable(self, now: datetime) -> bool:
        if self.disabled:
            return False
        if self.expires_at is None:
            return True
        expires = self.expires_at
        if expires.tzinfo is None:  # SQLite hands back naive datetimes
            expires = expires.replace(tzinfo=now.tzinfo)
        return expires > now


def robot_username(tenant: str, name: str) -> str:
    """Robots log in as ``<tenant>+<name>``: no '$', nothing a shell or YAML would mangle."""
    return f"{tenant}+{name}"


def _tenant(row: Tenant) -> TenantRecord:
    return TenantRecord(row.id, row.name, row.public)


def _user(row: User) -> UserRecord:
    return UserRecord(row.id, row.name, row.password_hash, row.is_admin, row.disabled)


class IdentityStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _add(self, row: object) -> None:
        try:
            async with self.session.begin_nested():
                self.session.add(row)
                await self.session.flush()
        except IntegrityError as exc:
            raise Conflict(str(exc.orig)) from exc

    async def generation(self) -> int | None:
        """models.IdentityGeneration's value now; None if its row is gone (nothing is reused)."""
        row = await fetch_one(
            self.session, "SELECT value FROM identity_generation WHERE id = 1", {}
        )
        return int(row[0]) if row else None

    # --- tenants
    async def tenant(self, name: str) -> TenantRecord | None:
        row = await fetch_one(
            self.session, "SELECT id, name, public FROM tenants WHERE name = :name", {"name": name}
        )
        return TenantRecord(row[0], row[1], bool(row[2])) if row else None

    async def tenants(self) -> list[TenantRecord]:
        rows = await self.session.scalars(select(Tenant).order_by(Tenant.name))
        return [_tenant(r) for r in rows]

    async def create_tenant(self, name: str, public: bool) -> TenantRecord:
        row = Tenant(name=name, public=public)
        await self._add(row)
        return _tenant(row)

    async def set_tenant_public(self, name: str, public: bool) -> bool:
        result = await self.session.execute(
            update(Tenant).where(Tenant.name == name).values(public=public)
        )
        return bool(result.rowcount)

    async def delete_tenant(self, name: str) -> bool:
        tenant = await self.tenant(name)
        if tenant is None:
            return False
        # Explicit, so the cascade does not hang on SQLite's foreign-key pragma.
        robot_ids = select(Robot.id).where(Robot.tenant_id == tenant.id)
        await self.session.execute(delete(RefreshToken).where(RefreshToken.robot_id.in_(robot_ids)))
        await self.session.execute(delete(Robot).where(Robot.tenant_id == tenant.id))
        await self.session.execute(delete(Membership).where(Membership.tenant_id == tenant.id))
        await self.session.execute(delete(Tenant).where(Tenant.id == tenant.id))
        return True

    # --- users
    async def user(self, name: str) -> UserRecord | None:
        row = await fetch_one(
            self.session,
            "SELECT id, name, password_hash, is_admin, disabled FROM users WHERE name = :name",
            {"name": name},
        )
        return UserRecord(row[0], row[1], row[2], bool(row[3]), bool(row[4])) if row else None

    async def users(self) -> list[UserRecord]:
        rows = await self.session.scalars(select(User).order_by(User.name))
        return [_user(r) for r in rows]

    async def create_user(self, name: str, password_hash: str, is_admin: bool) -> UserRecord:
        row = User(name=name, password_hash=password_hash, is_admin=is_admin, disabled=False)
        await self._add(row)
        return _user(row)

    async def update_user(
        self,
        name: str,
        *,
        password_hash: str | None = None,
        is_admin: bool | None = None,
        disabled: bool | None = None,
    ) -> bool:
        values: dict[str, object] = {}
        if password_hash is not None:
            values["password_hash"] = password_hash
        if is_admin is not None:
            values["is_admin"] = is_admin
        if disabled is not None:
            values["disabled"] = disabled
        if not values:
            return await self.user(name) is not None
        user = await self.user(name)
        if user is None:
            return False
        await self.session.execute(update(User).where(User.id == user.id).values(**values))
        if disabled or password_hash is not None:
            # A disabled account, or one whose password changed, loses its refresh tokens.
            await self.session.execute(delete(RefreshToken).where(RefreshToken.user_id == user.id))
        return True

    async def delete_user(self, name: str) -> bool:
        user = await self.user(name)
        if user is None:
            return False
        await self.session.execute(delete(RefreshToken).where(RefreshToken.user_id == user.id))
        await self.session.execute(delete(Membership).where(Membership.user_id == user.id))
        await self.session.execute(delete(User).where(User.id == user.id))
        return True

    # --- memberships
    async def role(self, tenant_id: int, user_id: int) -> str | None:
        row = await fetch_one(
            self.session,
            "SELECT role FROM memberships WHERE tenant_id = :tenant AND user_id = :user",
            {"tenant": tenant_id, "user": user_id},
        )
        return row[0] if row else None

    async def user_tenants(self, user_id: int) -> dict[str, str]:
        rows = await self.session.execute(
            select(Tenant.name, Membership.role)
            .join(Membership, Membership.tenant_id == Tenant.id)
            .where(Membership.user_id == user_id)
        )
        return {r.name: r.role for r in rows}

    async def public_tenants(self) -> set[str]:
        return set((await self.session.scalars(select(Tenant.name).where(Tenant.public))).all())

    async def members(self, tenant_id: int) -> list[tuple[str, str]]:
        rows = await self.session.execute(
            select(User.name, Membership.role)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.tenant_id == tenant_id)
            .order_by(User.name)
        )
        return [(r.name, r.role) for r in rows]

    async def set_member(self, tenant_id: int, user_id: int, role: str) -> None:
        existing = await self.role(tenant_id, user_id)
        if existing is None:
            await self._add(Membership(tenant_id=tenant_id, user_id=user_id, role=role))
        else:
            await self.session.execute(
                update(Membership)
                .where(Membership.tenant_id == tenant_id, Membership.user_id == user_id)
                .values(role=role)
            )

    async def remove_member(self, tenant_id: int, user_id: int) -> bool:
        result = await self.session.execute(
            delete(Membership).where(
                Membership.tenant_id == tenant_id, Membership.user_id == user_id
            )
        )
        return bool(result.rowcount)

    # --- robots
    def _robot_query(self):  # type: ignore[no-untyped-def]
        return select(Robot, Tenant.name.label("tenant_name")).join(
            Tenant, Tenant.id == Robot.tenant_id
        )

    @staticmethod
    def _robot(row: Robot, tenant: str) -> RobotRecord:
        actions = frozenset(a for a in row.actions.split(",") if a)
        return RobotRecord(
            row.id, tenant, row.name, row.secret_hash, actions, row.expires_at, row.disabled
        )

    async def robot(self, tenant: str, name: str) -> RobotRecord | None:
        row = await fetch_one(
            self.session,
            "SELECT r.id, r.name, r.secret_hash, r.actions, r.expires_at, r.disabled"
            " FROM robots r JOIN tenants t ON t.id = r.tenant_id"
            " WHERE t.name = :tenant AND r.name = :name",
            {"tenant": tenant, "name": name},
        )
        if row is None:
            return None
        actions = frozenset(a for a in row[3].split(",") if a)
        return RobotRecord(
            row[0], tenant, row[1], row[2], actions, as_datetime(row[4]), bool(row[5])
        )

    async def robots(self, tenant: str | None = None) -> list[RobotRecord]:
        query = self._robot_query().order_by(Tenant.name, Robot.name)
        if tenant is not None:
            query = query.where(Tenant.name == tenant)
        return [self._robot(r.Robot, r.tenant_name) for r in await self.session.execute(query)]

    async def create_robot(
        self,
        tenant: TenantRecord,
        name: str,
        secret_hash: str,
        actions: frozenset[str],
        expires_at: datetime | None,
    ) -> RobotRecord:
        row = Robot(
            tenant_id=tenant.id,
            name=name,
            secret_hash=secret_hash,
            actions=",".join(sorted(actions)),
            expires_at=expires_at,
            disabled=False,
        )
        await self._add(row)
        return self._robot(row, tenant.name)

    async def update_robot(
        self, robot: RobotRecord, *, disabled: bool | None = None, secret_hash: str | None = None
    ) -> None:
        values: dict[str, object] = {}
        if disabled is not None:
            values["disabled"] = disabled
        if secret_hash is not None:
            values["secret_hash"] = secret_hash
        if values:
            await self.session.execute(update(Robot).where(Robot.id == robot.id).values(**values))
        if disabled or secret_hash is not None:
            await self.session.execute(
                delete(RefreshToken).where(RefreshToken.robot_id == robot.id)
            )

    async def delete_robot(self, robot: RobotRecord) -> None:
        await self.session.execute(delete(RefreshToken).where(RefreshToken.robot_id == robot.id))
        await self.session.execute(delete(Robot).where(Robot.id == robot.id))

    # --- refresh tokens
    async def add_refresh_token(
        self, token_hash: str, *, user_id: int | None = None, robot_id: int | None = None
    ) -> None:
        await self._add(RefreshToken(token_hash=token_hash, user_id=user_id, robot_id=robot_id))

    async def refresh_token_owner(
        self, token_hash: str, issued_after: datetime | None
    ) -> tuple[int | None, int | None] | None:
        query = select(RefreshToken.user_id, RefreshToken.robot_id).where(
            RefreshToken.token_hash == token_hash
        )
        if issued_after is not None:
            query = query.where(RefreshToken.created_at > issued_after)
        row = (await self.session.execute(query)).first()
        return (row.user_id, row.robot_id) if row else None

    async def user_by_id(self, user_id: int) -> UserRecord | None:
        row = await self.session.get(User, user_id)
        return _user(row) if row else None

    async def robot_by_id(self, robot_id: int) -> RobotRecord | None:
        row = (await self.session.execute(self._robot_query().where(Robot.id == robot_id))).first()
        return self._robot(row.Robot, row.tenant_name) if row else None

    # --- failed logins
    async def failures_since(self, keys: list[str], since: datetime) -> dict[str, int]:
        rows = await self.session.execute(
            select(LoginFailure.key, func.count())
            .where(LoginFailure.key.in_(keys), LoginFailure.at > since)
            .group_by(LoginFailure.key)
        )
        return {r[0]: r[1] for r in rows}

    async def oldest_failure_since(self, key: str, since: datetime) -> datetime | None:
        return await self.session.scalar(
            select(func.min(LoginFailure.at)).where(
                LoginFailure.key == key, LoginFailure.at > since
            )
        )

    async def record_failures(self, keys: list[str]) -> None:
        now = utcnow()
        for key in keys:
            self.session.add(LoginFailure(key=key, at=now))
        await self.session.flush()

    async def prune_failures(self, before: datetime) -> None:
        await self.session.execute(delete(LoginFailure).where(LoginFailure.at < before))
