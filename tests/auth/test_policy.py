"""The access policy (registry.auth.policy) against a real, migrated SQLite database."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from registry.auth.policy import (
    ALL_ACTIONS,
    ANONYMOUS,
    ROBOT_ACTIONS,
    GrantCache,
    Identity,
    grant,
    permitted,
    readable_tenants,
    resolve_subject,
    robot_identity,
    user_identity,
)
from registry.auth.scopes import Scope
from registry.db.identities import IdentityStore
from registry.db.session import Database

pytestmark = pytest.mark.anyio

PULL = frozenset({"pull"})
PULL_PUSH = frozenset({"pull", "push"})
NOTHING: frozenset[str] = frozenset()


@dataclass
class World:
    db: Database
    ids: dict[str, Identity]


async def _seed(db: Database) -> dict[str, Identity]:
    past = datetime.now(UTC) - timedelta(hours=1)
    future = datetime.now(UTC) + timedelta(days=1)
    ids: dict[str, Identity] = {"anonymous": ANONYMOUS}
    async with db.write() as session:
        store = IdentityStore(session)
        tenants = {
            name: await store.create_tenant(name, public)
            for name, public in [("acme", False), ("acme-evil", False), ("pub", True)]
        }
        for name, is_admin in [
            ("root", True),
            ("reader", False),
            ("writer", False),
            ("boss", False),
            ("evil", False),
            ("outsider", False),
            ("gone", False),
        ]:
            user = await store.create_user(name, "not-a-real-hash", is_admin)
            ids[name] = user_identity(user)
        for tenant, user, role in [
            ("acme", "reader", "reader"),
            ("acme", "writer", "writer"),
            ("acme", "boss", "admin"),
            ("acme-evil", "evil", "admin"),
        ]:
            await store.set_member(tenants[tenant].id, ids[user].id or 0, role)
        await store.update_user("gone", disabled=True)
        for tenant, name, actions, expires in [
            ("acme", "ci", {"pull", "push", "delete"}, None),
            ("acme", "puller", {"pull"}, future),
            ("acme", "pusher", {"push"}, None),
            ("acme", "expired", {"pull"}, past),
            ("acme", "off", {"pull"}, None),
            ("acme-evil", "ci", {"pull", "push"}, None),
        ]:
            robot = await store.create_robot(
                tenants[tenant], name, "h", frozenset(actions), expires
            )
            if name == "off":
                await store.update_robot(robot, disabled=True)
            ids[f"{tenant}+{name}"] = robot_identity(robot)
    return ids


@pytest.fixture(scope="module")
def seeded(
    migrated_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Identity]]:
    """Identities written once per module; every test gets its own copy of the database."""
    path = tmp_path_factory.mktemp("policy") / "berth.db"
    shutil.copyfile(migrated_template, path)

    async def go() -> dict[str, Identity]:
        db = Database(f"sqlite:///{path}")
        try:
            return await _seed(db)
        finally:
            await db.dispose()

    return path, asyncio.run(go())


@pytest.fixture
async def world(seeded: tuple[Path, dict[str, Identity]], tmp_path: Path) -> AsyncIterator[World]:
    template, ids = seeded
    path = tmp_path / "berth.db"
    shutil.copyfile(template, path)
    db = Database(f"sqlite:///{path}")
    yield World(db, ids)
    await db.dispose()


async def _permitted(world: World, who: str, repository: str) -> frozenset[str]:
    async with world.db.read() as session:
        return await permitted(session, world.ids[who], repository)


# Each row: identity, repository, exactly the actions it may do.
CASES = [
    # members act by role, in their tenant only
    ("reader", "acme/app", PULL),
    ("writer", "acme/app", PULL_PUSH),
    ("boss", "acme/app", ALL_ACTIONS),
    ("boss", "acme/deep/nested/app", ALL_ACTIONS),
    ("boss", "acme", ALL_ACTIONS),
    ("outsider", "acme/app", NOTHING),
    # `acme` and `acme-evil` never cross
    ("reader", "acme-evil/app", NOTHING),
    ("boss", "acme-evil/app", NOTHING),
    ("evil", "acme/app", NOTHING),
    ("evil", "acme-evil/app", ALL_ACTIONS),
    ("acme+ci", "acme-evil/app", NOTHING),
    ("acme-evil+ci", "acme/app", NOTHING),
    ("acme-evil+ci", "acme-evil/app", PULL_PUSH),
    # site admins everywhere that exists, and nowhere else
    ("root", "acme/app", ALL_ACTIONS),
    ("root", "acme-evil/app", ALL_ACTIONS),
    ("root", "pub/app", ALL_ACTIONS),
    ("root", "nowhere/app", NOTHING),
    ("boss", "nowhere/app", NOTHING),
    ("anonymous", "nowhere/app", NOTHING),
    # robots: own tenant, own actions, never delete
    ("acme+ci", "acme/app", PULL_PUSH),
    ("acme+puller", "acme/app", PULL),
    ("acme+pusher", "acme/app", frozenset({"push"})),
    ("acme+ci", "pub/app", PULL),
    # public tenants: anybody pulls, nobody else pushes
    ("anonymous", "pub/app", PULL),
    ("anonymous", "acme/app", NOTHING),
    ("outsider", "pub/app", PULL),
    ("reader", "pub/app", PULL),
    ("boss", "pub/app", PULL),
    # names that are not repository names grant nothing
    ("root", "ACME/app", NOTHING),
    ("root", "acme/../globex", NOTHING),
    ("root", "", NOTHING),
    ("boss", "acme/app:latest", NOTHING),
]


@pytest.mark.parametrize(
    ("who", "repository", "expected"),
    CASES,
    ids=[f"{who}-on-{repo or 'empty'}" for who, repo, _ in CASES],
)
async def test_permitted(world: World, who: str, repository: str, expected: frozenset[str]) -> None:
    assert await _permitted(world, who, repository) == expected


async def test_robot_created_with_delete_never_gets_it(world: World) -> None:
    robot = world.ids["acme+ci"]
    assert "delete" in robot.robot_actions  # as created
    assert "delete" not in ROBOT_ACTIONS
    assert "delete" not in await _permitted(world, "acme+ci", "acme/app")


async def test_grant_is_the_intersection_of_asked_and_allowed(world: World) -> None:
    asked = [
        Scope("repository", "acme/app", ALL_ACTIONS),
        Scope("repository", "acme-evil/app", PULL),
        Scope("repository", "pub/app", PULL_PUSH),
        Scope("registry", "catalog", frozenset({"*"})),
        Scope("registry", "catalog", frozenset({"pull"})),
        Scope("registry", "gc", frozenset({"*"})),
        Scope("tenant", "acme", frozenset({"admin"})),
    ]
    async with world.db.read() as session:
        granted = await grant(session, world.ids["writer"], asked)
        anonymous = await grant(session, ANONYMOUS, asked)
        root = await grant(session, world.ids["root"], asked)
    assert granted == [
        Scope("repository", "acme/app", PULL_PUSH),
        Scope("repository", "acme-evil/app", NOTHING),
        Scope("repository", "pub/app", PULL),
        Scope("registry", "catalog", frozenset({"*"})),
        Scope("registry", "catalog", NOTHING),
        Scope("registry", "gc", NOTHING),
        Scope("tenant", "acme", NOTHING),
    ]
    assert [s.actions for s in anonymous] == [NOTHING, NOTHING, PULL, NOTHING, NOTHING] + [
        NOTHING,
        NOTHING,
    ]
    assert [s.actions for s in root][:4] == [ALL_ACTIONS, PULL, PULL_PUSH, frozenset({"*"})]
    assert [s.actions for s in root][4:] == [NOTHING, NOTHING, NOTHING]


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("root", None),
        ("reader", {"acme", "pub"}),
        ("evil", {"acme-evil", "pub"}),
        ("outsider", {"pub"}),
        ("anonymous", {"pub"}),
        ("acme+ci", {"acme", "pub"}),
        ("acme+pusher", {"pub"}),
        ("acme-evil+ci", {"acme-evil", "pub"}),
    ],
)
async def test_readable_tenants(world: World, who: str, expected: set[str] | None) -> None:
    async with world.db.read() as session:
        assert await readable_tenants(session, world.ids[who]) == expected


@pytest.mark.parametrize(
    ("subject", "live"),
    [
        ("writer", True),
        ("root", True),
        ("acme+ci", True),
        ("acme+puller", True),
        ("acme+expired", False),
        ("acme+off", False),
        ("gone", False),  # disabled user
        ("nobody", False),
        ("acme+nobody", False),
        ("nowhere+ci", False),
        ("acme-evil+puller", False),  # the name exists, but in another tenant
    ],
)
async def test_resolve_subject(world: World, subject: str, live: bool) -> None:
    async with world.db.read() as session:
        identity = await resolve_subject(session, subject)
    if not live:
        assert identity is None
        return
    assert identity == world.ids[subject]


async def test_anonymous_subject_resolves_to_anonymous(world: World) -> None:
    async with world.db.read() as session:
        assert await resolve_subject(session, "") == ANONYMOUS


async def test_deleted_user_and_robot_resolve_to_none(world: World) -> None:
    async with world.db.write() as session:
        store = IdentityStore(session)
        assert await store.delete_user("writer")
        robot = await store.robot("acme", "ci")
        assert robot is not None
        await store.delete_robot(robot)
    async with world.db.read() as session:
        assert await resolve_subject(session, "writer") is None
        assert await resolve_subject(session, "acme+ci") is None


async def test_role_change_takes_effect_at_once(world: World) -> None:
    async with world.db.write() as session:
        store = IdentityStore(session)
        tenant = await store.tenant("acme")
        assert tenant is not None
        await store.set_member(tenant.id, world.ids["reader"].id or 0, "admin")
        await store.remove_member(tenant.id, world.ids["writer"].id or 0)
    assert await _permitted(world, "reader", "acme/app") == ALL_ACTIONS
    assert await _permitted(world, "writer", "acme/app") == NOTHING


async def test_tenant_made_private_stops_anonymous_pulls(world: World) -> None:
    async with world.db.write() as session:
        assert await IdentityStore(session).set_tenant_public("pub", False)
    assert await _permitted(world, "anonymous", "pub/app") == NOTHING
    assert await _permitted(world, "reader", "pub/app") == NOTHING


async def test_deleted_tenant_grants_nothing_even_to_site_admins(world: World) -> None:
    async with world.db.write() as session:
        assert await IdentityStore(session).delete_tenant("acme")
    assert await _permitted(world, "root", "acme/app") == NOTHING
    assert await _permitted(world, "boss", "acme/app") == NOTHING


# --- GrantCache: grant's answers reused while the identity generation stands


@pytest.fixture
def decisions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The subjects policy.grant decided for, in order: what the cache did not answer itself."""
    from registry.auth import policy

    made: list[str] = []
    real = policy.grant

    async def counting(session: Any, identity: Identity, scopes: list[Scope]) -> list[Scope]:
        made.append(identity.subject)
        return await real(session, identity, scopes)

    monkeypatch.setattr(policy, "grant", counting)
    return made


async def _cached(world: World, cache: GrantCache, who: str, repo: str) -> frozenset[str]:
    async with world.db.read() as session:
        generation = await IdentityStore(session).generation()
        granted = await cache.grant(session, world.ids[who], _pull_push(repo), generation)
    return granted[0].actions


def _pull_push(repository: str) -> list[Scope]:
    return [Scope("repository", repository, PULL_PUSH)]


async def test_grant_cache_reuses_answers_until_an_identity_changes(
    world: World, decisions: list[str]
) -> None:
    cache = GrantCache()
    assert await _cached(world, cache, "writer", "acme/app") == PULL_PUSH
    assert await _cached(world, cache, "writer", "acme/app") == PULL_PUSH
    assert await _cached(world, cache, "reader", "acme/app") == PULL
    assert decisions == ["writer", "reader"]
    async with world.db.write() as session:
        store = IdentityStore(session)
        tenant = await store.tenant("acme")
        assert tenant is not None
        await store.set_member(tenant.id, world.ids["writer"].id or 0, "reader")
    assert await _cached(world, cache, "writer", "acme/app") == PULL
    assert decisions == ["writer", "reader", "writer"]


async def test_grant_cache_never_goes_back_to_an_older_generation(
    world: World, decisions: list[str]
) -> None:
    """A request that read the generation before a change, and asks after a newer one was
    cached, gets a fresh decision and leaves the newer answers in place."""
    cache = GrantCache()
    async with world.db.read() as session:
        old = await IdentityStore(session).generation()
    async with world.db.write() as session:
        assert await IdentityStore(session).set_tenant_public("pub", False)
    assert await _cached(world, cache, "anonymous", "pub/app") == NOTHING
    async with world.db.read() as session:
        stale = await cache.grant(session, ANONYMOUS, _pull_push("pub/app"), old)
    assert stale[0].actions == NOTHING  # decided now, not looked up under `old`
    assert await _cached(world, cache, "anonymous", "pub/app") == NOTHING
    assert decisions == ["", ""]  # the first and the stale one; the last was cached


async def test_grant_cache_without_a_generation_decides_every_time(
    world: World, decisions: list[str]
) -> None:
    cache = GrantCache()
    for _ in range(3):
        async with world.db.read() as session:
            await cache.grant(session, world.ids["writer"], _pull_push("acme/app"), None)
    assert decisions == ["writer"] * 3
