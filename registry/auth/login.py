"""Signing in: Basic credentials and refresh tokens to identities, with failed-login throttling.

Throttling counts recent failures per account and per client address in the database, so
every replica sees the same count. A throttled caller gets 429 with Retry-After before any
password is checked.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from anyio import to_thread

from registry import errors
from registry.auth import audit
from registry.auth.passwords import (
    burn_password_check,
    token_hash,
    verify_password,
    verify_robot_secret,
)
from registry.auth.policy import Identity, robot_identity, user_identity
from registry.db.identities import IdentityStore
from registry.db.models import utcnow
from registry.db.session import Database
from registry.settings import ThrottleSettings


class BadCredentials(Exception):
    """Wrong user name or secret: answered 401, never saying which."""


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str


def parse_basic(header: str | None) -> Credentials | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise BadCredentials("malformed Basic credentials") from exc
    username, sep, password = decoded.partition(":")
    if not sep:
        raise BadCredentials("malformed Basic credentials")
    return Credentials(username, password)


class Authenticator:
    def __init__(self, db: Database, pepper: bytes, throttle: ThrottleSettings) -> None:
        self.db, self.pepper, self.throttle = db, pepper, throttle

    async def login(self, credentials: Credentials, client: str | None) -> Identity:
        """The identity these credentials prove, or BadCredentials / TOOMANYREQUESTS."""
        keys = [f"account:{credentials.username[:255]}"]
        if client:
            keys.append(f"address:{client}")
        await self._check_throttle(keys, credentials.username, client)
        identity = await self._verify(credentials)
        if identity is None:
            async with self.db.write() as session:
                await IdentityStore(session).record_failures(keys)
            audit.record("login", "failure", actor=credentials.username[:255], client=client)
            raise BadCredentials("invalid username or password")
        return identity

    async def _verify(self, credentials: Credentials) -> Identity | None:
        username, password = credentials.username, credentials.password
        async with self.db.read() as session:
            store = IdentityStore(session)
            if "+" in username:
                tenant, _, name = username.partition("+")
                robot = await store.robot(tenant, name)
                if robot is None or not robot.usable(utcnow()):
                    return None
                ok = verify_robot_secret(self.pepper, robot.secret_hash, password)
                return robot_identity(robot) if ok else None
            user = await store.user(username)
        if user is None or user.disabled:
            # Spend the same time as a real check: timing must not reveal accounts.
            await to_thread.run_sync(burn_password_check, password)
            return None
        ok = await to_thread.run_sync(verify_password, user.password_hash, password)
        return user_identity(user) if ok else None

    async def _check_throttle(self, keys: list[str], username: str, client: str | None) -> None:
        window = timedelta(seconds=self.throttle.window_seconds)
        since = utcnow() - window
        async with self.db.read() as session:
            store = IdentityStore(session)
            counts = await store.failures_since(keys, since)
            blocked = [k for k in keys if counts.get(k, 0) >= self.throttle.max_failures]
            if not blocked:
                return
            oldest = await store.oldest_failure_since(blocked[0], since)
        retry = self.throttle.window_seconds
        if oldest is not None:
            oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
            retry = max(1, int((oldest + window - datetime.now(UTC)).total_seconds()) + 1)
        audit.record("login", "throttled", actor=username[:255], client=client, keys=blocked)
        raise errors.TOOMANYREQUESTS(
            message="too many failed logins; try again later",
            headers={"Retry-After": str(retry)},
        )

    async def new_refresh_token(self, identity: Identity) -> str:
        token = secrets.token_urlsafe(32)
        async with self.db.write() as session:
            await IdentityStore(session).add_refresh_token(
                token_hash(token),
                user_id=identity.id if identity.kind == "user" else None,
                robot_id=identity.id if identity.kind == "robot" else None,
            )
        return token

    async def from_refresh_token(self, token: str, ttl_days: int) -> Identity | None:
        issued_after = utcnow() - timedelta(days=ttl_days) if ttl_days else None
        async with self.db.read() as session:
            store = IdentityStore(session)
            owner = await store.refresh_token_owner(token_hash(token), issued_after)
            if owner is None:
                return None
            user_id, robot_id = owner
            if user_id is not None:
                user = await store.user_by_id(user_id)
                return user_identity(user) if user and not user.disabled else None
            if robot_id is not None:
                robot = await store.robot_by_id(robot_id)
                return robot_identity(robot) if robot and robot.usable(utcnow()) else None
        return None
