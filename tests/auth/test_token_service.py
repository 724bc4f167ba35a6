"""The token service and the registry's challenges, over real HTTP against `python -m registry`.

Identities are written into the data directory's database before the server starts. Failed
logins count per client address too, so every test that fails a login talks from its own
loopback address (127.0.0.x), and the rest of the suite keeps logging in from 127.0.0.1.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from registry.auth.keys import load_keys
from registry.auth.tokens import Claims, TokenIssuer
from registry.db.identities import IdentityStore
from registry.db.session import execute_sql
from tests.auth.support import (
    ADMIN,
    PASSWORD,
    SERVICE,
    RobotSpec,
    Seed,
    basic,
    bearer,
    challenge_params,
    describe,
    run_store,
    seed_data_dir,
    token_env,
)
from tests.support.processes import RegistryProcess, start_registry

SEED = Seed(
    tenants={"acme": False, "globex": False, "pub": True, "shared": True},
    users={
        ADMIN: True,
        "alice": False,  # acme writer
        "bob": False,  # acme reader
        "carol": False,  # deleted while the server runs
        "dave": False,  # disabled while the server runs
        "erin": False,  # throttled account
        "gina": False,  # throttled account, then tried on the POST grant
        # Targets of single failed logins, one each, so no account reaches the throttle.
        "hank": False,
        "ivy": False,
        "judy": False,
        "frank": False,  # globex admin
        # Changed while the server runs, after their decisions were cached.
        "kim": False,  # acme writer, demoted then removed
        "mia": False,  # no tenant, made site admin
    },
    members=[
        ("acme", "alice", "writer"),
        ("acme", "bob", "reader"),
        ("acme", "carol", "reader"),
        ("acme", "dave", "reader"),
        ("acme", "erin", "reader"),
        ("acme", "gina", "reader"),
        ("globex", "frank", "admin"),
        ("acme", "kim", "writer"),
    ],
    robots=[
        RobotSpec("acme", "ci", frozenset({"pull", "push", "delete"})),
        RobotSpec("acme", "old", frozenset({"pull"}), datetime.now(UTC) - timedelta(days=1)),
        RobotSpec("acme", "off", frozenset({"pull"}), disabled=True),
        RobotSpec("acme", "later", frozenset({"pull"}), datetime.now(UTC) + timedelta(days=1)),
        RobotSpec("acme", "temp", frozenset({"pull"})),  # disabled while the server runs
        RobotSpec("acme", "brief", frozenset({"pull"})),  # made to expire while it runs
    ],
    full_cost=frozenset({"alice", "erin", "hank"}),
)

# Failing-login tests each take a fresh source address; 127.0.0.1 never fails a login.
_addresses = (f"127.0.0.{n}" for n in itertools.count(20))


@dataclass
class Server:
    process: RegistryProcess
    data_dir: Path
    secrets: dict[str, str]
    verifier: TokenIssuer

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def realm(self) -> str:
        return f"{self.url}/auth/token"

    def client(self, address: str = "127.0.0.1") -> httpx.Client:
        # Plain HTTP: verify=False spares building a TLS context for every client.
        transport = httpx.HTTPTransport(local_address=address, verify=False)
        return httpx.Client(base_url=self.url, timeout=30, transport=transport, verify=False)

    def audit(self) -> list[dict[str, object]]:
        lines = (self.data_dir / "audit.log").read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def claims(self, token: str) -> Claims:
        return self.verifier.verify(token)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("token-service")
    secrets = seed_data_dir(data_dir, SEED)
    process = start_registry(data_dir, extra_env=token_env())
    keys = load_keys(data_dir / "keys", "ES256")
    try:
        yield Server(process, data_dir, secrets, TokenIssuer(keys, "berth", SERVICE, 300))
    finally:
        process.stop()


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture
def fresh(server: Server) -> Iterator[httpx.Client]:
    """A client on a loopback address no other test uses, for tests that fail logins."""
    with server.client(next(_addresses)) as client:
        yield client


def get_token(
    http: httpx.Client,
    scopes: list[str],
    auth: tuple[str, str] | None = None,
    **params: str,
) -> httpx.Response:
    query = [("service", SERVICE), *(("scope", s) for s in scopes), *params.items()]
    return http.get("/auth/token", params=query, headers=basic(*auth) if auth else {})


def granted(server: Server, resp: httpx.Response) -> dict[tuple[str, str], frozenset[str]]:
    assert resp.status_code == 200, describe(resp)
    body = resp.json()
    assert body["token"] == body["access_token"]
    return server.claims(body["token"]).access


# --------------------------------------------------------------------------- challenges


def test_base_without_token_is_challenged(server: Server, http: httpx.Client) -> None:
    resp = http.get("/v2/")
    assert resp.status_code == 401, describe(resp)
    assert resp.headers["www-authenticate"] == (
        f'Bearer realm="http://127.0.0.1:{server.process.port}/auth/token",service="berth"'
    )
    assert resp.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_base_with_any_valid_token_is_ok(server: Server, http: httpx.Client) -> None:
    token = get_token(http, []).json()["token"]
    resp = http.get("/v2/", headers=bearer(token))
    assert resp.status_code == 200, describe(resp)
    assert resp.headers["docker-distribution-api-version"] == "registry/2.0"


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/v2/acme/app/manifests/latest", "repository:acme/app:pull"),
        ("HEAD", "/v2/acme/app/manifests/latest", "repository:acme/app:pull"),
        ("GET", f"/v2/acme/app/blobs/sha256:{'a' * 64}", "repository:acme/app:pull"),
        ("GET", "/v2/acme/team/app/tags/list", "repository:acme/team/app:pull"),
        ("POST", "/v2/acme/app/blobs/uploads/", "repository:acme/app:pull,push"),
        ("PUT", "/v2/acme/app/manifests/latest", "repository:acme/app:pull,push"),
        ("DELETE", "/v2/acme/app/manifests/latest", "repository:acme/app:delete"),
        ("GET", "/v2/nowhere/app/manifests/latest", "repository:nowhere/app:pull"),
        ("GET", "/v2/_catalog", "registry:catalog:*"),
    ],
    ids=[
        "get-manifest",
        "head-manifest",
        "get-blob",
        "tags",
        "start-upload",
        "put-manifest",
        "delete-manifest",
        "nonexistent-tenant",
        "catalog",
    ],
)
def test_request_without_token_is_challenged_for_its_scope(
    server: Server, http: httpx.Client, method: str, path: str, scope: str
) -> None:
    resp = http.request(method, path)
    assert resp.status_code == 401, describe(resp)
    assert resp.headers["www-authenticate"] == (
        f'Bearer realm="{server.realm}",service="berth",scope="{scope}"'
    )


def test_token_lacking_the_action_gets_insufficient_scope(
    server: Server, http: httpx.Client
) -> None:
    token = get_token(http, ["repository:acme/app:pull"], ("alice", PASSWORD)).json()["token"]
    resp = http.post("/v2/acme/app/blobs/uploads/", headers=bearer(token))
    assert resp.status_code == 401, describe(resp)
    assert challenge_params(resp.headers["www-authenticate"]) == {
        "realm": server.realm,
        "service": "berth",
        "scope": "repository:acme/app:pull,push",
        "error": "insufficient_scope",
    }
    assert resp.json()["errors"][0]["code"] == "UNAUTHORIZED"
    # A token for one repository does not open its neighbour.
    resp = http.get("/v2/acme/other/tags/list", headers=bearer(token))
    assert resp.status_code == 401
    assert challenge_params(resp.headers["www-authenticate"])["error"] == "insufficient_scope"


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."],
    ids=["garbage", "two-segments", "junk-segments", "alg-none"],
)
def test_garbage_bearer_is_invalid_token(server: Server, http: httpx.Client, token: str) -> None:
    resp = http.get("/v2/acme/app/tags/list", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401, describe(resp)
    params = challenge_params(resp.headers["www-authenticate"])
    assert params["error"] == "invalid_token"
    assert params["scope"] == "repository:acme/app:pull"


def test_token_of_another_registry_is_invalid(server: Server, http: httpx.Client, tmp_path: Path):
    stranger = TokenIssuer(load_keys(tmp_path / "keys", "ES256"), "berth", SERVICE, 300)
    from registry.auth.scopes import Scope

    token, _, _ = stranger.issue(ADMIN, [Scope("repository", "acme/app", frozenset({"pull"}))])
    resp = http.get("/v2/acme/app/tags/list", headers=bearer(token))
    assert resp.status_code == 401, describe(resp)
    assert challenge_params(resp.headers["www-authenticate"])["error"] == "invalid_token"


# --------------------------------------------------------------------------- GET /auth/token


def test_get_token_for_a_user(server: Server, http: httpx.Client) -> None:
    resp = get_token(http, ["repository:acme/app:pull,push"], ("alice", PASSWORD))
    assert granted(server, resp) == {("repository", "acme/app"): frozenset({"pull", "push"})}
    body = resp.json()
    assert body["expires_in"] == 300
    assert body["issued_at"].endswith("Z")
    assert "refresh_token" not in body
    assert server.claims(body["token"]).subject == "alice"


def test_get_token_for_a_robot(server: Server, http: httpx.Client) -> None:
    secret = server.secrets["acme+ci"]
    resp = get_token(http, ["repository:acme/app:pull,push,delete"], ("acme+ci", secret))
    # Created with delete, but robots never get it.
    assert granted(server, resp) == {("repository", "acme/app"): frozenset({"pull", "push"})}
    assert server.claims(resp.json()["token"]).subject == "acme+ci"
    # Another tenant: nothing.
    resp = get_token(http, ["repository:globex/app:pull"], ("acme+ci", secret))
    assert granted(server, resp) == {("repository", "globex/app"): frozenset()}


def test_robot_with_future_expiry_logs_in(server: Server, http: httpx.Client) -> None:
    resp = get_token(
        http, ["repository:acme/app:pull"], ("acme+later", server.secrets["acme+later"])
    )
    assert granted(server, resp) == {("repository", "acme/app"): frozenset({"pull"})}


def test_anonymous_token(server: Server, http: httpx.Client) -> None:
    resp = get_token(
        http,
        ["repository:pub/base:pull,push", "repository:acme/app:pull", "registry:catalog:*"],
        offline_token="true",
    )
    assert granted(server, resp) == {
        ("repository", "pub/base"): frozenset({"pull"}),
        ("repository", "acme/app"): frozenset(),
        ("registry", "catalog"): frozenset(),
    }
    body = resp.json()
    assert "refresh_token" not in body
    assert server.claims(body["token"]).subject == ""


def test_several_scope_params(server: Server, http: httpx.Client) -> None:
    resp = get_token(
        http,
        [
            "repository:acme/app:pull",
            "repository:acme/team/tool:push",
            "repository:pub/base:pull",
            "repository:globex/app:pull",
            "registry:catalog:*",
            "total-garbage",
        ],
        ("alice", PASSWORD),
    )
    assert granted(server, resp) == {
        ("repository", "acme/app"): frozenset({"pull"}),
        ("repository", "acme/team/tool"): frozenset({"push"}),
        ("repository", "pub/base"): frozenset({"pull"}),
        ("repository", "globex/app"): frozenset(),
        ("registry", "catalog"): frozenset({"*"}),
    }


def test_asking_for_more_than_allowed_gets_only_what_is_allowed(
    server: Server, http: httpx.Client
) -> None:
    resp = get_token(
        http,
        ["repository:acme/app:*", "repository:globex/app:*", "repository:pub/base:*"],
        ("bob", PASSWORD),
    )
    assert granted(server, resp) == {
        ("repository", "acme/app"): frozenset({"pull"}),
        ("repository", "globex/app"): frozenset(),
        ("repository", "pub/base"): frozenset({"pull"}),
    }


def test_site_admin_gets_everything_but_not_in_missing_tenants(
    server: Server, http: httpx.Client
) -> None:
    resp = get_token(
        http, ["repository:globex/app:*", "repository:nowhere/app:*"], (ADMIN, PASSWORD)
    )
    assert granted(server, resp) == {
        ("repository", "globex/app"): frozenset({"pull", "push", "delete"}),
        ("repository", "nowhere/app"): frozenset(),
    }


def test_unknown_service_is_refused(http: httpx.Client) -> None:
    resp = http.get("/auth/token", params={"service": "someone-else"})
    assert resp.status_code == 400, describe(resp)


def test_offline_token_returns_a_refresh_token(server: Server, http: httpx.Client) -> None:
    resp = get_token(http, ["repository:acme/app:pull"], ("bob", PASSWORD), offline_token="true")
    assert granted(server, resp) == {("repository", "acme/app"): frozenset({"pull"})}
    refresh = resp.json()["refresh_token"]
    assert len(refresh) >= 32
    other = get_token(http, [], ("bob", PASSWORD), offline_token="true").json()["refresh_token"]
    assert other != refresh


def test_refresh_token_from_get_works_on_post(server: Server, http: httpx.Client) -> None:
    refresh = get_token(http, [], ("bob", PASSWORD), offline_token="true").json()["refresh_token"]
    again = http.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh, "service": SERVICE},
    )
    assert again.status_code == 200, describe(again)
    assert server.claims(again.json()["token"]).subject == "bob"


def test_jwks_publishes_the_key_that_signs_tokens(server: Server, http: httpx.Client) -> None:
    resp = http.get("/auth/jwks")
    assert resp.status_code == 200, describe(resp)
    keys = {k["kid"]: k for k in resp.json()["keys"]}
    token = get_token(http, ["repository:pub/base:pull"]).json()["token"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    assert header["kid"] == server.verifier.keys.signing_kid
    assert set(keys) == {header["kid"]}
    assert all("d" not in k for k in keys.values())
    # A client can verify the token with nothing but the published key.
    public = jwt.PyJWK(keys[header["kid"]]).key
    payload = jwt.decode(token, public, algorithms=["ES256"], audience=SERVICE, issuer="berth")
    assert payload["access"] == [{"type": "repository", "name": "pub/base", "actions": ["pull"]}]


# --------------------------------------------------------------------------- POST /auth/token


def test_post_password_grant_with_space_separated_scopes(
    server: Server, http: httpx.Client
) -> None:
    resp = http.post(
        "/auth/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": PASSWORD,
            "service": SERVICE,
            "client_id": "docker",
            "access_type": "offline",
            "scope": "repository:acme/app:pull,push repository:pub/base:pull repository:x/y:pull",
        },
    )
    assert granted(server, resp) == {
        ("repository", "acme/app"): frozenset({"pull", "push"}),
        ("repository", "pub/base"): frozenset({"pull"}),
        ("repository", "x/y"): frozenset(),
    }
    assert resp.json()["refresh_token"]
    without = http.post(
        "/auth/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
    )
    assert without.status_code == 200, describe(without)
    assert "refresh_token" not in without.json()


def test_refresh_token_is_reusable(server: Server, http: httpx.Client) -> None:
    refresh = get_token(http, [], ("alice", PASSWORD), offline_token="true").json()["refresh_token"]
    for scope in ["repository:acme/app:pull,push", "repository:acme/app:pull,push"]:
        resp = http.post(
            "/auth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh,
                "service": SERVICE,
                "scope": scope,
            },
        )
        assert granted(server, resp) == {("repository", "acme/app"): frozenset({"pull", "push"})}
        assert resp.json()["refresh_token"] == refresh


def test_robot_refresh_token(server: Server, http: httpx.Client) -> None:
    resp = get_token(http, [], ("acme+ci", server.secrets["acme+ci"]), offline_token="true")
    refresh = resp.json()["refresh_token"]
    resp = http.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "scope": "repository:acme/app:pull,push,delete",
        },
    )
    assert granted(server, resp) == {("repository", "acme/app"): frozenset({"pull", "push"})}


def _refresh(http: httpx.Client, token: str) -> httpx.Response:
    return http.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token,
            "service": SERVICE,
            "scope": "repository:acme/app:pull",
        },
    )


def test_refresh_token_revoked_when_user_deleted(server: Server, http: httpx.Client) -> None:
    refresh = get_token(http, [], ("carol", PASSWORD), offline_token="true").json()["refresh_token"]
    assert _refresh(http, refresh).status_code == 200

    async def delete(store: IdentityStore) -> bool:
        return await store.delete_user("carol")

    assert run_store(server.data_dir, delete)
    resp = _refresh(http, refresh)
    assert resp.status_code == 401, describe(resp)


def test_refresh_token_revoked_when_user_disabled(server: Server, http: httpx.Client) -> None:
    refresh = get_token(http, [], ("dave", PASSWORD), offline_token="true").json()["refresh_token"]
    assert _refresh(http, refresh).status_code == 200

    async def disable(store: IdentityStore) -> bool:
        return await store.update_user("dave", disabled=True)

    assert run_store(server.data_dir, disable)
    resp = _refresh(http, refresh)
    assert resp.status_code == 401, describe(resp)
    # Re-enabling does not bring the old refresh token back.

    async def enable(store: IdentityStore) -> bool:
        return await store.update_user("dave", disabled=False)

    assert run_store(server.data_dir, enable)
    assert _refresh(http, refresh).status_code == 401


@pytest.mark.parametrize(
    "data",
    [
        {"grant_type": "refresh_token", "refresh_token": "not-a-token"},
        {"grant_type": "refresh_token", "refresh_token": ""},
        {"grant_type": "refresh_token"},
    ],
    ids=["unknown", "empty", "missing"],
)
def test_unknown_refresh_token_is_refused(http: httpx.Client, data: dict[str, str]) -> None:
    resp = http.post("/auth/token", data=data)
    assert resp.status_code == 401, describe(resp)


def test_unsupported_grant_type(http: httpx.Client) -> None:
    resp = http.post("/auth/token", data={"grant_type": "client_credentials"})
    assert resp.status_code == 400, describe(resp)


# --------------------------------------------------------------------------- failed logins


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("hank", "wrong"),
        ("ivy", ""),
        ("nobody", PASSWORD),
        ("acme+ci", "wrong"),
        ("acme+old", "SECRET:acme+old"),
        ("acme+off", "SECRET:acme+off"),
        ("globex+ci", "SECRET:acme+ci"),
        ("acme+nobody", "x"),
    ],
    ids=[
        "wrong-password",
        "empty-password",
        "unknown-user",
        "robot-wrong-secret",
        "robot-expired",
        "robot-disabled",
        "robot-secret-in-other-tenant",
        "robot-unknown",
    ],
)
def test_bad_credentials_are_401(
    server: Server, fresh: httpx.Client, username: str, password: str
) -> None:
    if password.startswith("SECRET:"):
        password = server.secrets[password.removeprefix("SECRET:")]
    resp = get_token(fresh, ["repository:acme/app:pull"], (username, password))
    assert resp.status_code == 401, describe(resp)
    assert resp.headers["www-authenticate"].startswith("Basic ")
    body = resp.json()
    assert "token" not in body and "access_token" not in body
    assert body["errors"][0]["code"] == "UNAUTHORIZED"


def test_wrong_password_on_post_grant_is_401(fresh: httpx.Client) -> None:
    resp = fresh.post(
        "/auth/token",
        data={"grant_type": "password", "username": "judy", "password": "nope"},
    )
    assert resp.status_code == 401, describe(resp)


def test_malformed_basic_header_is_401(fresh: httpx.Client) -> None:
    resp = fresh.get("/auth/token", headers={"Authorization": "Basic !!!not-base64"})
    assert resp.status_code == 401, describe(resp)


def test_throttled_per_account(server: Server) -> None:
    for _ in range(3):
        with server.client(next(_addresses)) as client:
            resp = get_token(client, [], ("erin", "wrong"))
            assert resp.status_code == 401, describe(resp)
    with server.client(next(_addresses)) as client:
        # Even the right password, from yet another address: the account is locked for now.
        resp = get_token(client, [], ("erin", PASSWORD))
        assert resp.status_code == 429, describe(resp)
        retry = int(resp.headers["retry-after"])
        assert 1 <= retry <= 301
        assert resp.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    # Other accounts are not affected.
    with server.client(next(_addresses)) as client:
        assert get_token(client, [], ("bob", PASSWORD)).status_code == 200


def test_throttled_account_is_refused_on_post_grant_too(server: Server) -> None:
    for _ in range(3):
        with server.client(next(_addresses)) as client:
            assert get_token(client, [], ("gina", "wrong")).status_code == 401
    with server.client(next(_addresses)) as client:
        posted = client.post(
            "/auth/token",
            data={"grant_type": "password", "username": "gina", "password": PASSWORD},
        )
        assert posted.status_code == 429, describe(posted)
        assert int(posted.headers["retry-after"]) >= 1


def test_throttled_per_client_address(server: Server) -> None:
    address = next(_addresses)
    with server.client(address) as client:
        for name in ["mallory1", "mallory2", "bob"]:
            resp = get_token(client, [], (name, "guess"))
            assert resp.status_code == 401, describe(resp)
        resp = get_token(client, [], ("alice", PASSWORD))
        assert resp.status_code == 429, describe(resp)
        assert int(resp.headers["retry-after"]) >= 1
        # Anonymous tokens need no login and stay available.
        assert get_token(client, ["repository:pub/base:pull"]).status_code == 200
    with server.client(next(_addresses)) as other:
        assert get_token(other, [], ("alice", PASSWORD)).status_code == 200
        # bob failed once only (from the throttled address): still fine.
        assert get_token(other, [], ("bob", PASSWORD)).status_code == 200


# ------------------------------------------- decisions follow identity changes at once
# Token issue reuses what it decided for the same credentials and scopes while the identity
# generation stands (auth.policy.GrantCache, the login cache): each test asks twice first, so
# the second answer comes from the caches, then changes the identity and asks again.


def _actions(server: Server, resp: httpx.Response, scope: str) -> set[str]:
    assert resp.status_code == 200, describe(resp)
    _, name, _ = scope.split(":")
    return set(server.claims(resp.json()["token"]).access.get(("repository", name), ()))


def _ask_twice(server: Server, http: httpx.Client, scope: str, auth: Any) -> set[str]:
    first = _actions(server, get_token(http, [scope], auth), scope)
    assert _actions(server, get_token(http, [scope], auth), scope) == first
    return first


def test_a_demoted_then_removed_member_loses_access_at_once(
    server: Server, http: httpx.Client
) -> None:
    scope = "repository:acme/app:pull,push"
    assert _ask_twice(server, http, scope, ("kim", PASSWORD)) == {"pull", "push"}

    async def ids(store: IdentityStore) -> tuple[int, int]:
        tenant, user = await store.tenant("acme"), await store.user("kim")
        assert tenant is not None and user is not None
        return tenant.id, user.id

    tenant_id, user_id = run_store(server.data_dir, ids)
    run_store(server.data_dir, lambda store: store.set_member(tenant_id, user_id, "reader"))
    assert _actions(server, get_token(http, [scope], ("kim", PASSWORD)), scope) == {"pull"}
    run_store(server.data_dir, lambda store: store.remove_member(tenant_id, user_id))
    assert _actions(server, get_token(http, [scope], ("kim", PASSWORD)), scope) == set()


def test_a_user_made_site_admin_gets_everything_at_once(server: Server, http: httpx.Client) -> None:
    scope = "repository:globex/app:pull,push,delete"
    assert _ask_twice(server, http, scope, ("mia", PASSWORD)) == set()
    assert run_store(server.data_dir, lambda store: store.update_user("mia", is_admin=True))
    expected = {"pull", "push", "delete"}
    assert _actions(server, get_token(http, [scope], ("mia", PASSWORD)), scope) == expected


def test_a_tenant_made_private_stops_anonymous_pulls_at_once(
    server: Server, http: httpx.Client
) -> None:
    scope = "repository:shared/app:pull"
    assert _ask_twice(server, http, scope, None) == {"pull"}
    assert run_store(server.data_dir, lambda store: store.set_tenant_public("shared", False))
    assert _actions(server, get_token(http, [scope], None), scope) == set()


def test_a_robot_disabled_is_refused_at_once(server: Server, http: httpx.Client) -> None:
    scope = "repository:acme/app:pull"
    auth = ("acme+temp", server.secrets["acme+temp"])
    assert _ask_twice(server, http, scope, auth) == {"pull"}

    async def disable(store: IdentityStore) -> None:
        robot = await store.robot("acme", "temp")
        assert robot is not None
        await store.update_robot(robot, disabled=True)

    run_store(server.data_dir, disable)
    resp = get_token(http, [scope], auth)
    assert resp.status_code == 401, describe(resp)


def test_a_robot_expiring_while_its_login_is_cached_is_refused(
    server: Server, http: httpx.Client
) -> None:
    """Expiry is time, not a change any trigger sees: a reused login checks it itself."""
    scope = "repository:acme/app:pull"
    auth = ("acme+brief", server.secrets["acme+brief"])
    expires = datetime.now(UTC) + timedelta(seconds=3)

    async def expire_soon(store: IdentityStore) -> int:
        sql = "UPDATE robots SET expires_at = :at WHERE name = :name"
        return await execute_sql(store.session, sql, {"at": expires, "name": "brief"})

    assert run_store(server.data_dir, expire_soon) == 1
    assert _ask_twice(server, http, scope, auth) == {"pull"}
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.2)
    resp = get_token(http, [scope], auth)
    assert resp.status_code == 401, describe(resp)


# --------------------------------------------------------------------------- audit


def test_audit_log_records_logins_tokens_and_denials(server: Server, http: httpx.Client) -> None:
    with server.client(next(_addresses)) as bad:
        assert get_token(bad, [], ("frank", "wrong")).status_code == 401
    ok = get_token(http, ["repository:globex/app:pull"], ("frank", PASSWORD))
    token = ok.json()["token"]
    denied = http.delete("/v2/acme/app/manifests/latest", headers=bearer(token))
    assert denied.status_code == 401
    events = server.audit()

    def has(**fields: object) -> bool:
        return any(all(e.get(k) == v for k, v in fields.items()) for e in events)

    assert has(action="login", outcome="failure", actor="frank")
    assert has(action="login", outcome="success", actor="frank", client="127.0.0.1")
    issued = [e for e in events if e["action"] == "token" and e.get("actor") == "frank"]
    assert issued and issued[-1]["outcome"] == "issued"
    assert issued[-1]["detail"]["granted"] == ["repository:globex/app:pull"]
    assert has(
        action="access",
        outcome="denied",
        target="repository:acme/app:delete",
    )
    denial = [e for e in events if e["action"] == "access" and e["outcome"] == "denied"][-1]
    assert denial["detail"]["reason"] == "insufficient_scope"
    for event in events:
        assert event["at"] and event["action"] and event["outcome"]
        # Secrets never reach the log.
        assert PASSWORD not in json.dumps(event)
        assert token not in json.dumps(event)
