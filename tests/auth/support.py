"""Helpers shared by the HTTP auth tests.

* :func:`seed_data_dir` writes tenants, users, memberships and robots straight into the
  database a server will use, before it starts: the data directory's SQLite file, or the
  PostgreSQL database of the module's backend (:func:`use_backend`). The server loads the
  same keys directory, so robot secrets hashed with its pepper verify.
* :class:`DockerLike` talks to the registry the way docker does: send the request, read the
  challenge, ask the token service for the challenged scope (plus the mount source's), retry
  with whatever token comes back.
* Tiny deterministic images, pushed with a site admin's token.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from argon2 import PasswordHasher

from registry.auth.keys import load_keys
from registry.auth.passwords import generate_secret, hash_password, robot_secret_hash
from registry.db import migrate
from registry.db.identities import IdentityStore
from registry.db.session import Database

PASSWORD = "correct-horse-battery-staple"
ADMIN = "admin"
SERVICE = "berth"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
ACCEPT = {"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}

_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def challenge_params(header: str) -> dict[str, str]:
    """The parameters of a ``Bearer k="v",...`` challenge."""
    assert header.startswith("Bearer "), header
    return dict(_PARAM_RE.findall(header))


def basic(username: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --------------------------------------------------------------------------- seeding


@dataclass(frozen=True)
class RobotSpec:
    tenant: str
    name: str
    actions: frozenset[str]
    expires_at: datetime | None = None
    disabled: bool = False

    @property
    def username(self) -> str:
        return f"{self.tenant}+{self.name}"


@dataclass
class Seed:
    tenants: dict[str, bool]  # name -> public
    users: dict[str, bool]  # name -> site admin; every user's password is PASSWORD
    members: list[tuple[str, str, str]] = field(default_factory=list)  # tenant, user, role
    robots: list[RobotSpec] = field(default_factory=list)
    # Users hashed with the registry's own argon2 parameters (~0.5 s a login here); the others
    # get a cheap argon2id hash, which the registry verifies the same way, to keep the suite fast.
    full_cost: frozenset[str] = frozenset()


# The BERTH_* environment of the backend this module's servers run on; empty: SQLite and files
# in the data dir. Set per module by tests/auth/conftest.py.
_backend_env: dict[str, str] = {}


def use_backend(env: Mapping[str, str]) -> None:
    _backend_env.clear()
    _backend_env.update(env)


def database_url(data_dir: Path) -> str:
    """The database of the server that runs on ``data_dir``, as it will find it."""
    return _backend_env.get("BERTH_DATABASE__URL") or f"sqlite:///{data_dir}/berth.db"


def run_store(data_dir: Path, work: Callable[[IdentityStore], Awaitable[Any]]) -> Any:
    """Run ``work`` in one committed write transaction on the data dir's database."""

    async def go() -> Any:
        db = Database(database_url(data_dir))
        try:
            async with db.write() as session:
                return await work(IdentityStore(session))
        finally:
            await db.dispose()

    return asyncio.run(go())


def seed_data_dir(data_dir: Path, seed: Seed) -> dict[str, str]:
    """Migrate the data dir's database and write ``seed`` into it; returns robot secrets."""
    data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(database_url(data_dir))
    pepper = load_keys(data_dir / "keys", "ES256").pepper
    full_hash = hash_password(PASSWORD) if seed.full_cost else ""
    cheap_hash = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    secrets = {r.username: generate_secret() for r in seed.robots}

    async def work(store: IdentityStore) -> None:
        tenants = {
            name: await store.create_tenant(name, public) for name, public in seed.tenants.items()
        }
        users = {
            name: await store.create_user(
                name, full_hash if name in seed.full_cost else cheap_hash, is_admin
            )
            for name, is_admin in seed.users.items()
        }
        for tenant, user, role in seed.members:
            await store.set_member(tenants[tenant].id, users[user].id, role)
        for spec in seed.robots:
            robot = await store.create_robot(
                tenants[spec.tenant],
                spec.name,
                robot_secret_hash(pepper, secrets[spec.username]),
                spec.actions,
                spec.expires_at,
            )
            if spec.disabled:
                await store.update_robot(robot, disabled=True)

    run_store(data_dir, work)
    return secrets


def token_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        "BERTH_AUTH__MODE": "token",
        "BERTH_ADMIN_PASSWORD": PASSWORD,
        "BERTH_AUTH__THROTTLE__MAX_FAILURES": "3",
        "BERTH_AUTH__THROTTLE__MAX_FAILURES_PER_ADDRESS": "3",
        "BERTH_SERVER__ACCESS_LOG": "false",
        **_backend_env,
        **(extra or {}),
    }


# --------------------------------------------------------------------------- callers


@dataclass(frozen=True)
class Caller:
    """Who calls, and what the policy should let them do in each tenant."""

    id: str
    kind: str  # "user", "robot" or "anonymous"
    username: str | None
    grants: dict[str, frozenset[str]]

    def can(self, tenant: str) -> frozenset[str]:
        return self.grants.get(tenant, frozenset())


class DockerLike:
    """One caller's conversation with the registry, token dance included."""

    def __init__(
        self,
        http: httpx.Client,
        caller: Caller,
        secret: str | None = None,
        refresh_token: str | None = None,
    ) -> None:
        self.http, self.caller = http, caller
        self.secret, self.refresh_token = secret, refresh_token
        self._cache: dict[tuple[str, ...], tuple[float, str]] = {}

    def token(self, scopes: list[str]) -> str:
        key = tuple(sorted(scopes))
        cached = self._cache.get(key)
        if cached and time.monotonic() - cached[0] < 120:
            return cached[1]
        if self.refresh_token is not None:
            resp = self.http.post(
                "/auth/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": self.refresh_token,
                    "service": SERVICE,
                    "scope": " ".join(scopes),
                },
            )
        else:
            headers = (
                basic(self.caller.username, self.secret)
                if self.caller.username and self.secret
                else {}
            )
            params = [("service", SERVICE), *(("scope", s) for s in scopes)]
            resp = self.http.get("/auth/token", params=params, headers=headers)
        assert resp.status_code == 200, describe(resp)
        token = resp.json()["token"]
        self._cache[key] = (time.monotonic(), token)
        return token

    def request(
        self,
        method: str,
        path: str,
        *,
        extra_scopes: tuple[str, ...] = (),
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send, and on a Bearer challenge get a token for its scope and send again."""
        first = self.http.request(method, path, headers=headers, **kwargs)
        if first.status_code != 401:
            return first
        challenge = challenge_params(first.headers["www-authenticate"])
        scopes = [challenge["scope"], *extra_scopes] if "scope" in challenge else []
        token = self.token(scopes)
        return self.http.request(
            method, path, headers={**(headers or {}), **bearer(token)}, **kwargs
        )


def login_refresh_token(http: httpx.Client, username: str, password: str = PASSWORD) -> str:
    resp = http.get(
        "/auth/token",
        params={"service": SERVICE, "offline_token": "true"},
        headers=basic(username, password),
    )
    assert resp.status_code == 200, describe(resp)
    return resp.json()["refresh_token"]


def describe(resp: httpx.Response) -> str:
    req = resp.request
    body = resp.text[:1500] if req.method != "HEAD" else ""
    return (
        f"{req.method} {req.url} -> {resp.status_code}\n"
        f"response headers: {dict(resp.headers)}\nbody: {body}"
    )


# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class Image:
    repo: str
    config: bytes
    layer: bytes
    manifest: bytes

    @property
    def config_digest(self) -> str:
        return digest_of(self.config)

    @property
    def layer_digest(self) -> str:
        return digest_of(self.layer)

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)


def manifest_bytes(
    config: bytes, layers: list[bytes], annotations: dict[str, str] | None = None
) -> bytes:
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
        "layers": [
            {"mediaType": OCI_LAYER, "digest": digest_of(layer), "size": len(layer)}
            for layer in layers
        ],
    }
    if annotations:
        body["annotations"] = annotations
    return json.dumps(body, sort_keys=True).encode()


def make_image(repo: str, seed: str) -> Image:
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}},
        sort_keys=True,
    ).encode()
    config = config[:-1] + f',"seed":"{seed}"}}'.encode()
    layer = hashlib.sha256(f"layer:{seed}".encode()).digest() * 8
    return Image(repo, config, layer, manifest_bytes(config, [layer]))


class Pusher:
    """Writes with a token granting everything on the repositories it touches."""

    def __init__(self, session: DockerLike) -> None:
        self.s = session

    def _headers(self, repo: str) -> dict[str, str]:
        return bearer(self.s.token([f"repository:{repo}:pull,push,delete"]))

    def blob(self, repo: str, data: bytes) -> str:
        digest = digest_of(data)
        resp = self.s.http.post(
            f"/v2/{repo}/blobs/uploads/",
            params={"digest": digest},
            content=data,
            headers={**self._headers(repo), "Content-Type": "application/octet-stream"},
        )
        assert resp.status_code == 201, describe(resp)
        return digest

    def manifest(self, repo: str, reference: str, body: bytes, media_type: str = OCI_MANIFEST):
        resp = self.s.http.put(
            f"/v2/{repo}/manifests/{reference}",
            content=body,
            headers={**self._headers(repo), "Content-Type": media_type},
        )
        assert resp.status_code == 201, describe(resp)
        return resp

    def image(self, image: Image, tag: str) -> None:
        self.blob(image.repo, image.config)
        self.blob(image.repo, image.layer)
        self.manifest(image.repo, tag, image.manifest)

    def start_upload(self, repo: str) -> str:
        resp = self.s.http.post(f"/v2/{repo}/blobs/uploads/", headers=self._headers(repo))
        assert resp.status_code == 202, describe(resp)
        return resp.headers["location"]

    def status(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        repo = path.split("/v2/", 1)[1].rsplit("/manifests/", 1)[0].rsplit("/blobs/", 1)[0]
        headers = {**kwargs.pop("headers", {}), **self._headers(repo)}
        return self.s.http.request(method, path, headers=headers, **kwargs)
