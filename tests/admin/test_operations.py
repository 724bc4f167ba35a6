"""registry.admin.operations against a real migrated database: who may do what, validation,
typed errors, revocation and the audit trail."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from registry.admin import operations
from registry.admin.operations import (
    LOCAL_ADMIN,
    Admin,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    parse_actions,
    parse_expiry,
)
from registry.auth.passwords import verify_password, verify_robot_secret
from registry.auth.policy import Identity, permitted, robot_identity, user_identity
from registry.db.identities import IdentityStore
from registry.db.session import Database

pytestmark = pytest.mark.anyio

PEPPER = b"p" * 32
PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def fast_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real argon2id hashes with small costs: verify_password reads the costs from the hash."""
    monkeypatch.setattr(
        operations, "hash_password", PasswordHasher(time_cost=1, memory_cost=1024).hash
    )


def site(db: Database) -> Admin:
    return Admin(db, LOCAL_ADMIN, pepper=PEPPER, client="test")


async def as_user(db: Database, name: str) -> Admin:
    async with db.read() as session:
        user = await IdentityStore(session).user(name)
    assert user is not None
    return Admin(db, user_identity(user), pepper=PEPPER, client="test")


async def seed(db: Database) -> None:
    """acme (alice admin, rita reader) and globex (gus admin); nina belongs nowhere."""
    admin = site(db)
    await admin.create_tenant("acme")
    await admin.create_tenant("globex", public=True)
    for name in ("alice", "rita", "gus", "nina"):
        await admin.create_user(name, PASSWORD)
    await admin.set_member("acme", "alice", "admin")
    await admin.set_member("acme", "rita", "reader")
    await admin.set_member("globex", "gus", "admin")


# --- tenants and users (site admins only)


async def test_site_admin_manages_tenants(db: Database) -> None:
    admin = site(db)
    created = await admin.create_tenant("acme", public=True)
    assert (created.name, created.public) == ("acme", True)
    await admin.create_tenant("a-b.c__d")
    assert [t.name for t in await admin.list_tenants()] == ["a-b.c__d", "acme"]
    assert (await admin.set_tenant_public("acme", False)).public is False
    with pytest.raises(Conflict):
        await admin.create_tenant("acme")
    await admin.delete_tenant("acme")
    with pytest.raises(NotFound):
        await admin.delete_tenant("acme")
    with pytest.raises(NotFound):
        await admin.set_tenant_public("acme", True)
    assert [t.name for t in await admin.list_tenants()] == ["a-b.c__d"]


@pytest.mark.parametrize(
    "name", ["", "Acme", "acme/app", "-acme", "acme-", "a..b", "a___b", "acme+x", "x" * 256]
)
async def test_tenant_names_follow_the_repository_grammar(db: Database, name: str) -> None:
    with pytest.raises(Invalid):
        await site(db).create_tenant(name)


async def test_site_admin_manages_users(db: Database) -> None:
    admin = site(db)
    user = await admin.create_user("alice", PASSWORD, is_admin=True)
    assert (user.name, user.is_admin, user.disabled) == ("alice", True, False)
    with pytest.raises(Conflict):
        await admin.create_user("alice", PASSWORD)
    async with db.read() as session:
        stored = await IdentityStore(session).user("alice")
    assert stored is not None and verify_password(stored.password_hash, PASSWORD)
    assert stored.password_hash != PASSWORD

    updated = await admin.update_user("alice", password="another password", is_admin=False)
    assert updated.is_admin is False
    async with db.read() as session:
        stored = await IdentityStore(session).user("alice")
    assert stored is not None and verify_password(stored.password_hash, "another password")
    assert (await admin.update_user("alice", disabled=True)).disabled is True
    assert (await admin.update_user("alice", disabled=False)).disabled is False
    with pytest.raises(NotFound):
        await admin.update_user("bob", disabled=True)
    await admin.delete_user("alice")
    with pytest.raises(NotFound):
        await admin.delete_user("alice")
    assert await admin.list_users() == []


@pytest.mark.parametrize("name", ["", "Alice", "-alice", "acme+ci", "a b", "a/b", "a" * 65])
async def test_invalid_user_names(db: Database, name: str) -> None:
    with pytest.raises(Invalid):
        await site(db).create_user(name, PASSWORD)


@pytest.mark.parametrize("password", ["", "short", "x" * 1025])
async def test_invalid_passwords(db: Database, password: str) -> None:
    with pytest.raises(Invalid):
        await site(db).create_user("alice", password)
    await site(db).create_user("bob", PASSWORD)
    with pytest.raises(Invalid):
        await site(db).update_user("bob", password=password)


async def test_users_list_shows_their_tenants(db: Database) -> None:
    await seed(db)
    users = {u.name: u for u in await site(db).list_users()}
    assert users["alice"].tenants == {"acme": "admin"}
    assert users["nina"].tenants == {}


async def test_only_site_admins_manage_tenants_and_users(db: Database) -> None:
    await seed(db)
    alice = await as_user(db, "alice")  # admin of acme, not of the site
    for call in (
        alice.create_tenant("new"),
        alice.delete_tenant("acme"),
        alice.delete_tenant("missing"),
        alice.set_tenant_public("acme", True),
        alice.create_user("eve", PASSWORD),
        alice.list_users(),
        alice.update_user("rita", is_admin=True),
        alice.update_user("alice", is_admin=True),
        alice.delete_user("rita"),
    ):
        with pytest.raises(Forbidden):
            await call
    assert len(await site(db).list_tenants()) == 2


async def test_non_admins_list_only_their_tenants(db: Database) -> None:
    await seed(db)
    assert [t.name for t in await (await as_user(db, "rita")).list_tenants()] == ["acme"]
    assert await (await as_user(db, "nina")).list_tenants() == []


async def test_site_admin_cannot_lock_itself_out(db: Database) -> None:
    await site(db).create_user("root", PASSWORD, is_admin=True)
    root = await as_user(db, "root")
    for call in (
        root.update_user("root", is_admin=False),
        root.update_user("root", disabled=True),
        root.delete_user("root"),
    ):
        with pytest.raises(Invalid):
            await call
    assert (await root.update_user("root", password="a new password")).is_admin is True


# --- members


async def test_members(db: Database) -> None:
    await seed(db)
    admin = site(db)
    assert [(m.user, m.role) for m in await admin.list_members("acme")] == [
        ("alice", "admin"),
        ("rita", "reader"),
    ]
    assert (await admin.set_member("acme", "rita", "writer")).role == "writer"
    async with db.read() as session:
        rita = await IdentityStore(session).user("rita")
        assert rita is not None
        assert await permitted(session, user_identity(rita), "acme/app") == {"pull", "push"}
    await admin.remove_member("acme", "rita")
    with pytest.raises(NotFound):
        await admin.remove_member("acme", "rita")
    with pytest.raises(NotFound):
        await admin.set_member("acme", "nobody", "reader")
    with pytest.raises(NotFound):
        await admin.set_member("missing", "rita", "reader")
    with pytest.raises(Invalid):
        await admin.set_member("acme", "rita", "owner")


async def test_tenant_admin_manages_its_own_tenant_only(db: Database) -> None:
    await seed(db)
    alice = await as_user(db, "alice")
    await alice.set_member("acme", "nina", "writer")
    assert {m.user for m in await alice.list_members("acme")} == {"alice", "rita", "nina"}
    await alice.remove_member("acme", "nina")
    credentials = await alice.create_robot("acme", "ci", "pull,push")
    assert credentials.username == "acme+ci"
    assert [r.name for r in await alice.list_robots("acme")] == ["ci"]
    # Another tenant, existing or not: the same "not found".
    for tenant in ("globex", "missing"):
        for call in (
            alice.list_members(tenant),
            alice.set_member(tenant, "nina", "reader"),
            alice.remove_member(tenant, "gus"),
            alice.list_robots(tenant),
            alice.create_robot(tenant, "ci", "pull"),
            alice.delete_robot(tenant, "ci"),
        ):
            with pytest.raises(NotFound) as caught:
                await call
            assert str(caught.value) == f"tenant {tenant!r} not found"
    with pytest.raises(Forbidden):
        await alice.list_robots()  # every tenant's robots: site admins only


async def test_members_without_admin_role_are_forbidden(db: Database) -> None:
    await seed(db)
    rita = await as_user(db, "rita")  # reader of acme
    for call in (
        rita.list_members("acme"),
        rita.set_member("acme", "rita", "admin"),
        rita.create_robot("acme", "ci", "pull"),
        rita.list_robots("acme"),
    ):
        with pytest.raises(Forbidden):
            await call


async def test_robots_cannot_administer(db: Database) -> None:
    await seed(db)
    await site(db).create_robot("acme", "ci", "pull,push")
    async with db.read() as session:
        robot = await IdentityStore(session).robot("acme", "ci")
    assert robot is not None
    as_robot = Admin(db, robot_identity(robot), pepper=PEPPER)
    with pytest.raises(NotFound):
        await as_robot.list_robots("acme")
    with pytest.raises(Forbidden):
        await as_robot.create_tenant("x")
    assert await as_robot.list_tenants() == []


# --- robots


async def test_robot_lifecycle(db: Database) -> None:
    await seed(db)
    admin = site(db)
    expires = datetime.now(UTC) + timedelta(days=30)
    credentials = await admin.create_robot("acme", "ci", ["pull", "push"], expires_at=expires)
    robot = credentials.robot
    assert (robot.tenant, robot.name, robot.username) == ("acme", "ci", "acme+ci")
    assert robot.actions == ["pull", "push"]
    assert robot.expires_at is not None and robot.expired is False
    assert credentials.secret.isalnum() and len(credentials.secret) >= 40
    with pytest.raises(Conflict):
        await admin.create_robot("acme", "ci", "pull")

    async with db.read() as session:
        stored = await IdentityStore(session).robot("acme", "ci")
        assert stored is not None
        assert verify_robot_secret(PEPPER, stored.secret_hash, credentials.secret)
        assert await permitted(session, robot_identity(stored), "acme/app") == {"pull", "push"}
        assert await permitted(session, robot_identity(stored), "globex/app") == {"pull"}

    rotated = await admin.rotate_robot_secret("acme", "ci")
    assert rotated.secret != credentials.secret
    async with db.read() as session:
        stored = await IdentityStore(session).robot("acme", "ci")
        assert stored is not None
        assert verify_robot_secret(PEPPER, stored.secret_hash, rotated.secret)
        assert not verify_robot_secret(PEPPER, stored.secret_hash, credentials.secret)

    assert (await admin.set_robot_disabled("acme", "ci", True)).disabled is True
    assert (await admin.set_robot_disabled("acme", "ci", False)).disabled is False
    assert [r.username for r in await admin.list_robots()] == ["acme+ci"]
    await admin.delete_robot("acme", "ci")
    with pytest.raises(NotFound):
        await admin.delete_robot("acme", "ci")
    with pytest.raises(NotFound):
        await admin.rotate_robot_secret("acme", "ci")
    assert await admin.list_robots("acme") == []


@pytest.mark.parametrize("actions", ["", "push", "delete", "pull,delete", "pull,push,delete", "*"])
async def test_robot_actions_are_pull_or_pull_push(actions: str) -> None:
    with pytest.raises(Invalid):
        parse_actions(actions)


async def test_robot_validation(db: Database) -> None:
    await seed(db)
    admin = site(db)
    for name in ("CI", "ci/x", "ci+x", "-ci", ""):
        with pytest.raises(Invalid):
            await admin.create_robot("acme", name, "pull")
    with pytest.raises(Invalid):
        await admin.create_robot("acme", "ci", "pull", expires_at=datetime(2000, 1, 1, tzinfo=UTC))
    assert await admin.list_robots("acme") == []


def test_parse_expiry() -> None:
    now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_expiry("30d", now) == now + timedelta(days=30)
    assert parse_expiry("12h", now) == now + timedelta(hours=12)
    assert parse_expiry("90m", now) == now + timedelta(minutes=90)
    assert parse_expiry("2w", now) == now + timedelta(weeks=2)
    assert parse_expiry("2031-02-03", now) == datetime(2031, 2, 3, tzinfo=UTC)
    assert parse_expiry("2031-02-03T04:05:06+02:00", now) == datetime(
        2031, 2, 3, 2, 5, 6, tzinfo=UTC
    )
    for bad in ("0d", "30", "soon", "2029-12-31", "-1d", "1y"):
        with pytest.raises(Invalid):
            parse_expiry(bad, now)


async def test_disabling_or_rotating_revokes_refresh_tokens(db: Database) -> None:
    await seed(db)
    admin = site(db)
    await admin.create_robot("acme", "ci", "pull")

    async def add_tokens() -> None:
        async with db.write() as session:
            store = IdentityStore(session)
            user = await store.user("rita")
            robot = await store.robot("acme", "ci")
            assert user is not None and robot is not None
            await store.add_refresh_token("u" * 64, user_id=user.id)
            await store.add_refresh_token("r" * 64, robot_id=robot.id)

    async def owners() -> list[object]:
        async with db.read() as session:
            store = IdentityStore(session)
            return [await store.refresh_token_owner(h * 64, None) for h in "ur"]

    await add_tokens()
    assert None not in await owners()
    await admin.update_user("rita", disabled=True)
    await admin.set_robot_disabled("acme", "ci", True)
    assert await owners() == [None, None]

    await admin.update_user("rita", disabled=False)
    await admin.set_robot_disabled("acme", "ci", False)
    await add_tokens()
    await admin.update_user("rita", password="a brand new password")
    await admin.rotate_robot_secret("acme", "ci")
    assert await owners() == [None, None]


async def test_deleting_a_tenant_removes_its_robots_and_memberships(db: Database) -> None:
    await seed(db)
    admin = site(db)
    await admin.create_robot("acme", "ci", "pull")
    await admin.delete_tenant("acme")
    assert await admin.list_robots() == []
    users = {u.name: u for u in await admin.list_users()}
    assert users["alice"].tenants == {}


async def test_every_change_is_audited(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="berth.audit"):
        await seed(db)
        await site(db).create_robot("acme", "ci", "pull")
        alice = await as_user(db, "alice")
        await alice.set_member("acme", "nina", "reader")
        with pytest.raises(NotFound):
            await alice.list_members("globex")
        with pytest.raises(Conflict):
            await site(db).create_tenant("acme")
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "berth.audit"]
    seen = [(e["action"], e["outcome"], e["actor"], e["target"]) for e in events]
    assert seen == [
        ("tenant.create", "success", "local-cli", "acme"),
        ("tenant.create", "success", "local-cli", "globex"),
        ("user.create", "success", "local-cli", "alice"),
        ("user.create", "success", "local-cli", "rita"),
        ("user.create", "success", "local-cli", "gus"),
        ("user.create", "success", "local-cli", "nina"),
        ("member.set", "success", "local-cli", "acme/alice"),
        ("member.set", "success", "local-cli", "acme/rita"),
        ("member.set", "success", "local-cli", "globex/gus"),
        ("robot.create", "success", "local-cli", "acme+ci"),
        ("member.set", "success", "alice", "acme/nina"),
        ("member.list", "denied", "alice", "globex"),
    ]
    assert all(e["client"] == "test" for e in events)
    assert not any("secret" in json.dumps(e.get("detail", {})).lower() for e in events)


async def test_identity_without_id_is_not_a_member(db: Database) -> None:
    await seed(db)
    stranger = Admin(db, Identity("user", "alice", None), pepper=PEPPER)
    with pytest.raises(NotFound):
        await stranger.list_members("acme")
