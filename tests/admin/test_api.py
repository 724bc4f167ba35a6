"""The /api/v1 admin API over real HTTP: a `python -m registry serve` in token mode, tokens from
/auth/token, and the same rules as the CLI (site admins, tenant admins, everyone else)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from registry.app import build_services, create_app
from registry.settings import load_settings
from tests.support.processes import RegistryProcess, start_registry

ADMIN_PASSWORD = "admin-password-for-tests"
PASSWORD = "member-password"

_names = itertools.count(1)


def fresh(prefix: str) -> str:
    return f"{prefix}{next(_names):03d}"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    server = start_registry(
        tmp_path_factory.mktemp("admin-api"),
        extra_env={
            "BERTH_AUTH__MODE": "token",
            "BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            # Tests log in with wrong secrets on purpose, all from 127.0.0.1.
            "BERTH_AUTH__THROTTLE__MAX_FAILURES": "1000",
            "BERTH_AUTH__THROTTLE__MAX_FAILURES_PER_ADDRESS": "1000",
        },
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def http(registry: RegistryProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=60) as client:
        yield client


def login(http: httpx.Client, username: str, password: str, *scopes: str) -> httpx.Response:
    return http.get(
        "/auth/token",
        params={"service": "berth", "scope": list(scopes)},
        auth=(username, password),
    )


def token(http: httpx.Client, username: str, password: str) -> dict[str, str]:
    resp = login(http, username, password)
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


@pytest.fixture(scope="module")
def admin(http: httpx.Client) -> dict[str, str]:
    return token(http, "admin", ADMIN_PASSWORD)


def expect(resp: httpx.Response, status: int) -> Any:
    assert resp.status_code == status, f"{resp.request.method} {resp.request.url}: {resp.text}"
    return resp.json() if resp.content else None


def error(resp: httpx.Response, status: int, code: str) -> str:
    body = expect(resp, status)
    assert resp.headers["content-type"].startswith("application/json")
    assert body["errors"][0]["code"] == code, body
    return str(body["errors"][0]["message"])


def make_user(http: httpx.Client, admin: dict[str, str], prefix: str = "user") -> str:
    name = fresh(prefix)
    body = {"name": name, "password": PASSWORD}
    expect(http.post("/api/v1/users", json=body, headers=admin), 201)
    return name


def make_tenant(http: httpx.Client, admin: dict[str, str], tenant_admin: str | None = None) -> str:
    name = fresh("tenant")
    expect(http.post("/api/v1/tenants", json={"name": name}, headers=admin), 201)
    if tenant_admin:
        url = f"/api/v1/tenants/{name}/members/{tenant_admin}"
        expect(http.put(url, json={"role": "admin"}, headers=admin), 200)
    return name


def access_claim(token_response: httpx.Response) -> list[dict[str, Any]]:
    assert token_response.status_code == 200, token_response.text
    claims = jwt.decode(token_response.json()["token"], options={"verify_signature": False})
    return list(claims["access"])


# --- authentication


def test_requires_a_valid_token(http: httpx.Client) -> None:
    resp = http.get("/api/v1/tenants")
    error(resp, 401, "UNAUTHORIZED")
    challenge = resp.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and '/auth/token"' in challenge
    assert 'service="berth"' in challenge

    resp = http.get("/api/v1/tenants", headers={"Authorization": "Bearer not-a-jwt"})
    error(resp, 401, "UNAUTHORIZED")
    assert 'error="invalid_token"' in resp.headers["www-authenticate"]

    anonymous = http.get("/auth/token", params={"service": "berth"}).json()["token"]
    resp = http.get("/api/v1/tenants", headers={"Authorization": f"Bearer {anonymous}"})
    error(resp, 401, "UNAUTHORIZED")


def test_disabled_accounts_lose_access_at_once(http: httpx.Client, admin: dict[str, str]) -> None:
    name = make_user(http, admin)
    expect(http.patch(f"/api/v1/users/{name}", json={"is_admin": True}, headers=admin), 200)
    theirs = token(http, name, PASSWORD)
    expect(http.get("/api/v1/users", headers=theirs), 200)
    expect(http.patch(f"/api/v1/users/{name}", json={"disabled": True}, headers=admin), 200)
    error(http.get("/api/v1/users", headers=theirs), 401, "UNAUTHORIZED")
    assert login(http, name, PASSWORD).status_code == 401


# --- site admin


def test_tenants(http: httpx.Client, admin: dict[str, str]) -> None:
    name = fresh("tenant")
    created = expect(http.post("/api/v1/tenants", json={"name": name}, headers=admin), 201)
    assert created == {"name": name, "public": False}
    message = error(
        http.post("/api/v1/tenants", json={"name": name}, headers=admin), 409, "UNSUPPORTED"
    )
    assert "already exists" in message
    error(
        http.post("/api/v1/tenants", json={"name": "Bad/Name"}, headers=admin), 400, "UNSUPPORTED"
    )
    listed = expect(http.get("/api/v1/tenants", headers=admin), 200)
    assert {"name": name, "public": False} in listed["tenants"]

    patched = http.patch(f"/api/v1/tenants/{name}", json={"public": True}, headers=admin)
    assert expect(patched, 200) == {"name": name, "public": True}
    # Anyone may now pull from it, anonymously too.
    pull = http.get(
        "/auth/token", params={"service": "berth", "scope": f"repository:{name}/x:pull"}
    )
    assert access_claim(pull) == [{"type": "repository", "name": f"{name}/x", "actions": ["pull"]}]

    expect(http.delete(f"/api/v1/tenants/{name}", headers=admin), 204)
    error(http.delete(f"/api/v1/tenants/{name}", headers=admin), 404, "NOT_FOUND")
    error(
        http.patch(f"/api/v1/tenants/{name}", json={"public": 1}, headers=admin), 400, "UNSUPPORTED"
    )


def test_users(http: httpx.Client, admin: dict[str, str]) -> None:
    name = fresh("user")
    body = {"name": name, "password": PASSWORD, "is_admin": False}
    created = expect(http.post("/api/v1/users", json=body, headers=admin), 201)
    assert created == {"name": name, "is_admin": False, "disabled": False, "tenants": {}}
    error(http.post("/api/v1/users", json=body, headers=admin), 409, "UNSUPPORTED")
    listed = expect(http.get("/api/v1/users", headers=admin), 200)["users"]
    assert name in [u["name"] for u in listed] and "admin" in [u["name"] for u in listed]
    assert "password" not in str(listed) and "argon2" not in str(listed)

    url = f"/api/v1/users/{name}"
    expect(http.patch(url, json={"password": "changed-password"}, headers=admin), 200)
    assert login(http, name, PASSWORD).status_code == 401
    assert login(http, name, "changed-password").status_code == 200
    expect(http.delete(url, headers=admin), 204)
    error(http.delete(url, headers=admin), 404, "NOT_FOUND")
    error(http.patch(url, json={"disabled": True}, headers=admin), 404, "NOT_FOUND")
    # The site admin cannot lock itself out.
    error(http.delete("/api/v1/users/admin", headers=admin), 400, "UNSUPPORTED")


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"name": "ok", "password": "long enough", "extra": 1}',
        b'{"name": 5, "password": "long enough"}',
        b'{"name": "ok", "password": "long enough", "is_admin": "yes"}',
        b'{"password": "long enough"}',
    ],
)
def test_bad_bodies(http: httpx.Client, admin: dict[str, str], content: bytes) -> None:
    resp = http.post("/api/v1/users", content=content, headers=admin)
    error(resp, 400, "UNSUPPORTED")


def test_unknown_methods(http: httpx.Client, admin: dict[str, str]) -> None:
    resp = http.put("/api/v1/tenants", json={}, headers=admin)
    assert resp.status_code == 405


# --- tenant admins and everyone else


def test_tenant_admin_manages_only_its_own_tenant(
    http: httpx.Client, admin: dict[str, str]
) -> None:
    boss, member, outsider = (make_user(http, admin) for _ in range(3))
    mine = make_tenant(http, admin, tenant_admin=boss)
    other = make_tenant(http, admin)
    as_boss = token(http, boss, PASSWORD)

    url = f"/api/v1/tenants/{mine}/members/{member}"
    assert expect(http.put(url, json={"role": "writer"}, headers=as_boss), 200) == {
        "tenant": mine,
        "user": member,
        "role": "writer",
    }
    members = expect(http.get(f"/api/v1/tenants/{mine}/members", headers=as_boss), 200)
    assert {(m["user"], m["role"]) for m in members["members"]} == {
        (boss, "admin"),
        (member, "writer"),
    }
    error(http.put(url, json={"role": "owner"}, headers=as_boss), 400, "UNSUPPORTED")
    # Its tenants only, and nothing site-wide.
    assert expect(http.get("/api/v1/tenants", headers=as_boss), 200) == {
        "tenants": [{"name": mine, "public": False}]
    }
    error(http.post("/api/v1/tenants", json={"name": fresh("t")}, headers=as_boss), 403, "DENIED")
    error(http.delete(f"/api/v1/tenants/{mine}", headers=as_boss), 403, "DENIED")
    error(http.get("/api/v1/users", headers=as_boss), 403, "DENIED")
    body = {"name": fresh("u"), "password": PASSWORD}
    error(http.post("/api/v1/users", json=body, headers=as_boss), 403, "DENIED")
    error(
        http.patch(f"/api/v1/users/{boss}", json={"is_admin": True}, headers=as_boss), 403, "DENIED"
    )

    # Another tenant, existing or not, answers the same.
    for tenant in (other, fresh("missing")):
        for method, path, body in (
            ("GET", "members", None),
            ("PUT", f"members/{outsider}", {"role": "reader"}),
            ("DELETE", f"members/{outsider}", None),
            ("GET", "robots", None),
            ("POST", "robots", {"name": "ci", "actions": ["pull"]}),
            ("PATCH", "robots/ci", {"disabled": True}),
            ("DELETE", "robots/ci", None),
            ("POST", "robots/ci/secret", None),
        ):
            resp = http.request(
                method, f"/api/v1/tenants/{tenant}/{path}", json=body, headers=as_boss
            )
            assert error(resp, 404, "NOT_FOUND") == f"tenant {tenant!r} not found"

    # A writer of the tenant knows it exists but may not manage it.
    as_member = token(http, member, PASSWORD)
    error(http.get(f"/api/v1/tenants/{mine}/members", headers=as_member), 403, "DENIED")
    body = {"name": "ci", "actions": "pull"}
    error(http.post(f"/api/v1/tenants/{mine}/robots", json=body, headers=as_member), 403, "DENIED")

    expect(http.delete(url, headers=as_boss), 204)
    error(http.delete(url, headers=as_boss), 404, "NOT_FOUND")


def test_robot_created_through_the_api_pulls_its_tenant(
    http: httpx.Client, admin: dict[str, str]
) -> None:
    boss = make_user(http, admin)
    tenant = make_tenant(http, admin, tenant_admin=boss)
    other = make_tenant(http, admin)
    as_boss = token(http, boss, PASSWORD)
    robots = f"/api/v1/tenants/{tenant}/robots"

    resp = http.post(
        robots, json={"name": "puller", "actions": ["pull"], "expires_in": "30d"}, headers=as_boss
    )
    created = expect(resp, 201)
    assert resp.headers["cache-control"] == "no-store"
    username, secret = created["username"], created["secret"]
    assert username == f"{tenant}+puller"
    assert created["robot"]["actions"] == ["pull"] and created["robot"]["expires_at"]
    error(
        http.post(robots, json={"name": "puller", "actions": ["pull"]}, headers=as_boss),
        409,
        "UNSUPPORTED",
    )
    error(
        http.post(robots, json={"name": "x", "actions": ["push"]}, headers=as_boss),
        400,
        "UNSUPPORTED",
    )
    error(
        http.post(
            robots,
            json={"name": "x", "actions": "pull", "expires_in": "2001-01-01"},
            headers=as_boss,
        ),
        400,
        "UNSUPPORTED",
    )
    listed = expect(http.get(robots, headers=as_boss), 200)["robots"]
    assert [r["username"] for r in listed] == [username]
    assert secret not in str(listed)

    scopes = (f"repository:{tenant}/app:pull,push", f"repository:{other}/app:pull")
    assert access_claim(login(http, username, secret, *scopes)) == [
        {"type": "repository", "name": f"{tenant}/app", "actions": ["pull"]},
        {"type": "repository", "name": f"{other}/app", "actions": []},
    ]
    # Robots administer nothing, not even their own tenant.
    as_robot = token(http, username, secret)
    error(http.get(robots, headers=as_robot), 404, "NOT_FOUND")
    error(http.get("/api/v1/users", headers=as_robot), 403, "DENIED")

    rotated = expect(http.post(f"{robots}/puller/secret", headers=as_boss), 200)
    assert rotated["secret"] != secret
    assert login(http, username, secret).status_code == 401
    assert login(http, username, rotated["secret"]).status_code == 200

    patched = http.patch(f"{robots}/puller", json={"disabled": True}, headers=as_boss)
    assert expect(patched, 200)["disabled"] is True
    assert login(http, username, rotated["secret"]).status_code == 401
    expect(http.patch(f"{robots}/puller", json={"disabled": False}, headers=as_boss), 200)
    assert login(http, username, rotated["secret"]).status_code == 200

    expect(http.delete(f"{robots}/puller", headers=as_boss), 204)
    error(http.delete(f"{robots}/puller", headers=as_boss), 404, "NOT_FOUND")
    assert login(http, username, rotated["secret"]).status_code == 401


def test_admin_changes_are_audited(
    http: httpx.Client, admin: dict[str, str], registry: RegistryProcess
) -> None:
    name = make_tenant(http, admin)
    assert registry.data_dir is not None
    log = (registry.data_dir / "audit.log").read_text()
    assert (
        f'"action": "tenant.create", "outcome": "success", "actor": "admin", "target": "{name}"'
        in log
    )


@pytest.mark.anyio
async def test_no_admin_api_without_token_auth(tmp_path: Path) -> None:
    settings = load_settings(
        environ={}, overrides={"data_dir": str(tmp_path), "auth": {"mode": "none"}}
    )
    app = create_app(settings)
    app.state.services = services = build_services(settings)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://berth") as client:
            for method, path in (("GET", "/api/v1/tenants"), ("POST", "/api/v1/users")):
                resp = await client.request(method, path, json={})
                assert resp.status_code == 404
                assert resp.json()["errors"][0]["code"] == "NOT_FOUND"
    finally:
        await services.db.dispose()
