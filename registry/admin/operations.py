"""Administration operations, one layer shared by the CLI and the /api/v1 API.

Each operation checks that the acting identity may do it, validates its arguments, changes the
database in one transaction, writes the audit record once that transaction has committed, and
answers with plain records that hold no password or secret hash. Failures are typed
(:class:`NotFound`, :class:`Conflict`, :class:`Forbidden`, :class:`Invalid`): the CLI maps them
to exit codes and the API to HTTP statuses.

Who may do what:

- Site admins manage everything: tenants, users, memberships and robots.
- A tenant's admins (members with the ``admin`` role) manage that tenant's members and robots.
- Anyone else asking about a tenant's members or robots hears that the tenant does not exist,
  whether or not it does, so tenant names cannot be probed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from anyio import to_thread

from registry.auth import audit
from registry.auth.access import Action
from registry.auth.passwords import generate_secret, hash_password, robot_secret_hash
from registry.auth.policy import ROBOT_ACTIONS, ROLE_ACTIONS, Identity
from registry.db import identities
from registry.db.identities import IdentityStore, RobotRecord, TenantRecord, robot_username
from registry.db.models import utcnow
from registry.db.repositories import RepositoryStore
from registry.db.session import Database
from registry.oci.names import _COMPONENT

# Tenants are the first component of repository names; robots share the grammar so that
# ``<tenant>+<name>`` survives shells, YAML and docker's config.json.
COMPONENT_RE = re.compile(_COMPONENT)
MAX_COMPONENT_LENGTH = 255
# No '+': a user name never looks like a robot's.
USER_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MIN_PASSWORD_LENGTH = 8
# argon2 accepts anything; the cap keeps one request from hashing megabytes.
MAX_PASSWORD_LENGTH = 1024
ROLES = tuple(ROLE_ACTIONS)
_DURATION_RE = re.compile(r"(\d+)([mhdw])")
_DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

# The identity the command line acts as: whoever can open the database is a site admin.
LOCAL_ADMIN = Identity("user", "local-cli", None, is_admin=True)


class AdminError(Exception):
    """An administration request that cannot be done; ``str(exc)`` says why."""


class NotFound(AdminError):
    pass


class Conflict(AdminError):
    pass


class Forbidden(AdminError):
    pass


class Invalid(AdminError):
    pass


@dataclass(frozen=True, slots=True)
class TenantInfo:
    name: str
    public: bool


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    is_admin: bool
    disabled: bool
    # tenant -> role
    tenants: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MemberInfo:
    tenant: str
    user: str
    role: str


@dataclass(frozen=True, slots=True)
class RobotInfo:
    tenant: str
    name: str
    username: str
    actions: list[str]
    expires_at: str | None
    disabled: bool
    expired: bool


@dataclass(frozen=True, slots=True)
class RobotCredentials:
    """A robot and its secret, as answered once on creation or rotation."""

    robot: RobotInfo
    secret: str

    @property
    def username(self) -> str:
        return self.robot.username


def _robot_info(robot: RobotRecord) -> RobotInfo:
    expires = robot.expires_at
    if expires is not None and expires.tzinfo is None:  # SQLite hands back naive datetimes
        expires = expires.replace(tzinfo=UTC)
    return RobotInfo(
        tenant=robot.tenant,
        name=robot.name,
        username=robot.username,
        actions=sorted(robot.actions),
        expires_at=expires.isoformat() if expires else None,
        disabled=robot.disabled,
        expired=expires is not None and expires <= utcnow(),
    )


async def _hash(password: str) -> str:
    # argon2 takes a noticeable fraction of a second: keep it off the event loop.
    return await to_thread.run_sync(hash_password, password)


# --- validation


def validate_tenant_name(name: str) -> str:
    if len(name) > MAX_COMPONENT_LENGTH or not COMPONENT_RE.fullmatch(name):
        raise Invalid(
            f"invalid tenant name {name[:100]!r}: lowercase letters and digits, separated by "
            "'.', '_', '__' or dashes (no '/')"
        )
    return name


def validate_user_name(name: str) -> str:
    if not USER_RE.fullmatch(name):
        raise Invalid(
            f"invalid user name {name[:100]!r}: 1 to 64 of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return name


def validate_robot_name(name: str) -> str:
    if len(name) > MAX_COMPONENT_LENGTH or not COMPONENT_RE.fullmatch(name):
        raise Invalid(
            f"invalid robot name {name[:100]!r}: lowercase letters and digits, separated by "
            "'.', '_', '__' or dashes"
        )
    return name


def validate_password(password: str) -> str:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise Invalid(
            f"passwords must have {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )
    return password


def validate_role(role: str) -> str:
    if role not in ROLE_ACTIONS:
        raise Invalid(f"invalid role {role[:50]!r}: one of {', '.join(ROLES)}")
    return role


def parse_actions(actions: str | list[str]) -> frozenset[str]:
    """A robot's actions: ``pull`` or ``pull,push`` (a robot that pushes must read back)."""
    items = actions.split(",") if isinstance(actions, str) else actions
    wanted = frozenset(a.strip() for a in items if a.strip())
    if not wanted or not wanted <= ROBOT_ACTIONS or Action.PULL not in wanted:
        raise Invalid("robot access must be 'pull' or 'pull,push'")
    return wanted


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """``30d``, ``12h``, ``90m``, ``2w`` from now, or an ISO date or date-time (UTC if naive)."""
    now = now or utcnow().replace(microsecond=0)
    text = text.strip()
    match = _DURATION_RE.fullmatch(text)
    if match:
        amount = int(match.group(1))
        if amount <= 0:
            raise Invalid("expiry must be in the future")
        try:
            return now + timedelta(**{_DURATION_UNITS[match.group(2)]: amount})
        except OverflowError as exc:
            raise Invalid(f"expiry {text[:50]!r} is too far away") from exc
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise Invalid(
                f"invalid expiry {text[:50]!r}: a duration (30d, 12h, 90m, 2w) or an ISO date"
            ) from None
        moment = datetime(day.year, day.month, day.day)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment <= now:
        raise Invalid(f"expiry {text[:50]!r} is in the past")
    return moment


# --- operations


class Admin:
    """The operations ``actor`` asks for, against ``db``.

    ``pepper`` keys robot secret hashes (auth.keys); only robot creation and rotation need it.
    ``client`` is recorded in the audit log (the caller's address, or "local" for the CLI).
    """

    def __init__(
        self,
        db: Database,
        actor: Identity,
        *,
        pepper: bytes | None = None,
        client: str | None = None,
    ) -> None:
        self.db, self.actor, self.pepper, self.client = db, actor, pepper, client

    def _audit(self, action: str, target: str, outcome: str = "success", **detail: object) -> None:
        audit.record(
            action,
            outcome,
            actor=self.actor.subject or "anonymous",
            target=target,
            client=self.client,
            **detail,
        )

    def _require_site_admin(self, action: str, target: str) -> None:
        if not self.actor.is_admin:
            self._audit(action, target, "denied")
            raise Forbidden(f"{action} needs a site admin")

    async def _managed_tenant(self, store: IdentityStore, name: str, action: str) -> TenantRecord:
        """The tenant, if the actor may manage its members and robots.

        A caller who is not a member hears "not found" whether or not the tenant exists.
        """
        tenant = await store.tenant(name)
        if self.actor.is_admin:
            if tenant is None:
                raise NotFound(f"tenant {name[:100]!r} not found")
            return tenant
        role = None
        if tenant is not None and self.actor.kind == "user" and self.actor.id is not None:
            role = await store.role(tenant.id, self.actor.id)
        if tenant is None or role is None:
            self._audit(action, name[:255], "denied")
            raise NotFound(f"tenant {name[:100]!r} not found")
        if role != "admin":
            self._audit(action, name, "denied")
            raise Forbidden(f"{action} needs an admin of tenant {name!r}")
        return tenant

    def _is_self(self, user: str) -> bool:
        # The CLI's local admin (no id) is no account, whatever its subject says.
        return (
            self.actor.kind == "user" and self.actor.id is not None and user == self.actor.subject
        )

    def _require_pepper(self) -> bytes:
        if self.pepper is None:
            raise RuntimeError("robot secrets need the pepper from auth.keys")
        return self.pepper

    # --- tenants

    async def create_tenant(self, name: str, *, public: bool = False) -> TenantInfo:
        self._require_site_admin("tenant.create", name[:255])
        validate_tenant_name(name)
        async with self.db.write() as session:
            try:
                tenant = await IdentityStore(session).create_tenant(name, public)
            except identities.Conflict as exc:
                raise Conflict(f"tenant {name!r} already exists") from exc
        self._audit("tenant.create", name, public=public)
        return TenantInfo(tenant.name, tenant.public)

    async def list_tenants(self) -> list[TenantInfo]:
        """Every tenant for site admins; for anyone else, the tenants they belong to."""
        async with self.db.read() as session:
            store = IdentityStore(session)
            tenants = await store.tenants()
            if self.actor.is_admin:
                return [TenantInfo(t.name, t.public) for t in tenants]
            if self.actor.kind != "user" or self.actor.id is None:
                return []
            mine = await store.user_tenants(self.actor.id)
        return [TenantInfo(t.name, t.public) for t in tenants if t.name in mine]

    async def set_tenant_public(self, name: str, public: bool) -> TenantInfo:
        self._require_site_admin("tenant.update", name[:255])
        async with self.db.write() as session:
            if not await IdentityStore(session).set_tenant_public(name, public):
                raise NotFound(f"tenant {name[:100]!r} not found")
        self._audit("tenant.update", name, public=public)
        return TenantInfo(name, public)

    async def delete_tenant(self, name: str) -> None:
        self._require_site_admin("tenant.delete", name[:255])
        async with self.db.write() as session:
            # A tenant created later under the same name would inherit these images: its
            # repositories must be deleted first.
            if await RepositoryStore(session).any_in_tenant(name):
                raise Conflict(f"tenant {name[:100]!r} still has repositories; delete them first")
            if not await IdentityStore(session).delete_tenant(name):
                raise NotFound(f"tenant {name[:100]!r} not found")
        self._audit("tenant.delete", name)

    # --- users

    async def create_user(self, name: str, password: str, *, is_admin: bool = False) -> UserInfo:
        self._require_site_admin("user.create", name[:255])
        validate_user_name(name)
        validate_password(password)
        password_hash = await _hash(password)
        async with self.db.write() as session:
            try:
                await IdentityStore(session).create_user(name, password_hash, is_admin)
            except identities.Conflict as exc:
                raise Conflict(f"user {name!r} already exists") from exc
        self._audit("user.create", name, is_admin=is_admin)
        return UserInfo(name, is_admin, False)

    async def list_users(self) -> list[UserInfo]:
        self._require_site_admin("user.list", "*")
        async with self.db.read() as session:
            store = IdentityStore(session)
            return [
                UserInfo(u.name, u.is_admin, u.disabled, await store.user_tenants(u.id))
                for u in await store.users()
            ]

    async def update_user(
        self,
        name: str,
        *,
        password: str | None = None,
        is_admin: bool | None = None,
        disabled: bool | None = None,
    ) -> UserInfo:
        """Change a password, site-admin status or disabled state; refresh tokens of a
        disabled account or a changed password are revoked."""
        self._require_site_admin("user.update", name[:255])
        if self._is_self(name) and (is_admin is False or disabled):
            raise Invalid("you cannot remove your own site admin rights or disable yourself")
        password_hash = None if password is None else await _hash(validate_password(password))
        async with self.db.write() as session:
            store = IdentityStore(session)
            changed = await store.update_user(
                name, password_hash=password_hash, is_admin=is_admin, disabled=disabled
            )
            user = await store.user(name) if changed else None
            if user is None:
                raise NotFound(f"user {name[:100]!r} not found")
            tenants = await store.user_tenants(user.id)
        changes: dict[str, object] = {"password_changed": password_hash is not None}
        if is_admin is not None:
            changes["is_admin"] = is_admin
        if disabled is not None:
            changes["disabled"] = disabled
        self._audit("user.update", name, **changes)
        return UserInfo(user.name, user.is_admin, user.disabled, tenants)

    async def delete_user(self, name: str) -> None:
        self._require_site_admin("user.delete", name[:255])
        if self._is_self(name):
            raise Invalid("you cannot delete your own account")
        async with self.db.write() as session:
            if not await IdentityStore(session).delete_user(name):
                raise NotFound(f"user {name[:100]!r} not found")
        self._audit("user.delete", name)

    # --- members

    async def set_member(self, tenant: str, user: str, role: str) -> MemberInfo:
        """Add ``user`` to ``tenant`` with ``role``, or change the role of a member."""
        async with self.db.write() as session:
            store = IdentityStore(session)
            found = await self._managed_tenant(store, tenant, "member.set")
            validate_role(role)
            account = await store.user(user)
            if account is None:
                raise NotFound(f"user {user[:100]!r} not found")
            previous = await store.role(found.id, account.id)
            try:
                await store.set_member(found.id, account.id, role)
            except identities.Conflict as exc:  # added concurrently
                raise Conflict(f"{user!r} was just added to {tenant!r}; try again") from exc
        self._audit("member.set", f"{tenant}/{user}", role=role, previous_role=previous)
        return MemberInfo(tenant, user, role)

    async def list_members(self, tenant: str) -> list[MemberInfo]:
        async with self.db.read() as session:
            store = IdentityStore(session)
            found = await self._managed_tenant(store, tenant, "member.list")
            return [MemberInfo(tenant, u, r) for u, r in await store.members(found.id)]

    async def remove_member(self, tenant: str, user: str) -> None:
        async with self.db.write() as session:
            store = IdentityStore(session)
            found = await self._managed_tenant(store, tenant, "member.remove")
            account = await store.user(user)
            if account is None or not await store.remove_member(found.id, account.id):
                raise NotFound(f"{user[:100]!r} is not a member of {tenant!r}")
        self._audit("member.remove", f"{tenant}/{user}")

    # --- robots

    async def create_robot(
        self,
        tenant: str,
        name: str,
        actions: str | list[str],
        *,
        expires_at: datetime | None = None,
    ) -> RobotCredentials:
        """A robot of ``tenant`` with a fresh secret, answered this once and never stored."""
        async with self.db.write() as session:
            store = IdentityStore(session)
            found = await self._managed_tenant(store, tenant, "robot.create")
            validate_robot_name(name)
            wanted = parse_actions(actions)
            if expires_at is not None and expires_at <= utcnow():
                raise Invalid("expiry must be in the future")
            secret = generate_secret()
            try:
                robot = await store.create_robot(
                    found,
                    name,
                    robot_secret_hash(self._require_pepper(), secret),
                    wanted,
                    expires_at,
                )
            except identities.Conflict as exc:
                raise Conflict(f"robot {robot_username(tenant, name)!r} already exists") from exc
        self._audit(
            "robot.create",
            robot.username,
            actions=sorted(wanted),
            expires_at=expires_at.isoformat() if expires_at else None,
        )
        return RobotCredentials(_robot_info(robot), secret)

    async def list_robots(self, tenant: str | None = None) -> list[RobotInfo]:
        """The robots of ``tenant``; of every tenant (site admins only) when it is None."""
        async with self.db.read() as session:
            store = IdentityStore(session)
            if tenant is None:
                self._require_site_admin("robot.list", "*")
            else:
                await self._managed_tenant(store, tenant, "robot.list")
            return [_robot_info(r) for r in await store.robots(tenant)]

    async def _robot(
        self, store: IdentityStore, tenant: str, name: str, action: str
    ) -> RobotRecord:
        await self._managed_tenant(store, tenant, action)
        robot = await store.robot(tenant, name)
        if robot is None:
            raise NotFound(f"robot {robot_username(tenant, name)[:200]!r} not found")
        return robot

    async def set_robot_disabled(self, tenant: str, name: str, disabled: bool) -> RobotInfo:
        """Disable (revoking its refresh tokens) or re-enable a robot."""
        async with self.db.write() as session:
            store = IdentityStore(session)
            robot = await self._robot(store, tenant, name, "robot.update")
            await store.update_robot(robot, disabled=disabled)
            robot = await store.robot(tenant, name)
        assert robot is not None
        self._audit("robot.update", robot.username, disabled=disabled)
        return _robot_info(robot)

    async def rotate_robot_secret(self, tenant: str, name: str) -> RobotCredentials:
        """A new secret for the robot; the old one and its refresh tokens stop working."""
        secret = generate_secret()
        async with self.db.write() as session:
            store = IdentityStore(session)
            robot = await self._robot(store, tenant, name, "robot.rotate")
            await store.update_robot(
                robot, secret_hash=robot_secret_hash(self._require_pepper(), secret)
            )
        self._audit("robot.rotate", robot.username)
        return RobotCredentials(_robot_info(robot), secret)

    async def delete_robot(self, tenant: str, name: str) -> None:
        async with self.db.write() as session:
            store = IdentityStore(session)
            robot = await self._robot(store, tenant, name, "robot.delete")
            await store.delete_robot(robot)
        self._audit("robot.delete", robot.username)
