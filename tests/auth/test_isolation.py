"""The tenant isolation matrix, over real HTTP: every caller x every tenant x every API action.

Two private tenants (acme, globex) and a public one (pub) each hold ``<tenant>/app`` with an
image tagged v1, a referrer, a blob used as a mount source and a "secret" blob only that tenant
has. Each caller gets tokens the way docker does: send the request, ask the token service for
the challenged scope (plus the source's for a mount), send again with whatever comes back.
Allowed actions must succeed; refused ones get 401 insufficient_scope and never data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.auth.support import (
    ACCEPT,
    ADMIN,
    OCI_EMPTY,
    OCI_MANIFEST,
    PASSWORD,
    Caller,
    DockerLike,
    Image,
    Pusher,
    RobotSpec,
    Seed,
    challenge_params,
    describe,
    digest_of,
    make_image,
    manifest_bytes,
    seed_data_dir,
    token_env,
)
from tests.support.processes import RegistryProcess, start_registry

PULL = frozenset({"pull"})
PULL_PUSH = frozenset({"pull", "push"})
ALL = frozenset({"pull", "push", "delete"})

TENANTS = ["acme", "globex", "pub"]
# The tenant whose content each tenant's callers try to reach.
OTHER = {"acme": "globex", "globex": "acme", "pub": "acme"}
MISSING_TENANT = "initech"


def _member(tenant: str, role: str, grants: frozenset[str]) -> Caller:
    return Caller(f"{tenant}-{role}", "user", f"{tenant}-{role}", {tenant: grants, "pub": PULL})


CALLERS = [
    Caller("site-admin", "user", ADMIN, dict.fromkeys(TENANTS, ALL)),
    _member("acme", "reader", PULL),
    _member("acme", "writer", PULL_PUSH),
    _member("acme", "admin", ALL),
    _member("globex", "reader", PULL),
    _member("globex", "writer", PULL_PUSH),
    _member("globex", "admin", ALL),
    Caller("acme-robot-pull", "robot", "acme+puller", {"acme": PULL, "pub": PULL}),
    Caller("acme-robot-push", "robot", "acme+ci", {"acme": PULL_PUSH, "pub": PULL}),
    # Created with pull, push and delete: robots never get delete.
    Caller("globex-robot-all", "robot", "globex+ci", {"globex": PULL_PUSH, "pub": PULL}),
    Caller("anonymous", "anonymous", None, {"pub": PULL}),
]
# A tenant whose name starts with another's: kept out of the full matrix, probed on its own.
EVIL = "acme-evil"
EVIL_ADMIN = _member(EVIL, "admin", ALL)
BY_ID = {c.id: c for c in [*CALLERS, EVIL_ADMIN]}

SEED = Seed(
    tenants={"acme": False, "globex": False, "pub": True, EVIL: False},
    users={c.username: c.id == "site-admin" for c in BY_ID.values() if c.kind == "user"},
    members=[
        (tenant, f"{tenant}-{role}", role)
        for tenant in ("acme", "globex")
        for role in ("reader", "writer", "admin")
    ]
    + [(EVIL, EVIL_ADMIN.id, "admin")],
    robots=[
        RobotSpec("acme", "puller", PULL),
        RobotSpec("acme", "ci", PULL_PUSH),
        RobotSpec("globex", "ci", ALL),
    ],
)


@dataclass
class Content:
    """What one tenant's repository holds."""

    image: Image
    referrer: str
    mount_source: bytes
    secret: bytes

    @property
    def all_bytes(self) -> list[bytes]:
        return [self.image.manifest, self.image.config, self.image.layer, self.secret]

    @property
    def all_digests(self) -> list[str]:
        return [
            self.image.digest,
            self.image.config_digest,
            self.image.layer_digest,
            self.referrer,
            digest_of(self.mount_source),
            digest_of(self.secret),
        ]


@dataclass
class World:
    process: RegistryProcess
    http: httpx.Client
    secrets: dict[str, str]
    content: dict[str, Content] = field(default_factory=dict)
    sessions: dict[str, DockerLike] = field(default_factory=dict)

    def session(self, caller: Caller) -> DockerLike:
        if caller.id not in self.sessions:
            secret = None
            if caller.kind == "user":
                secret = PASSWORD
            elif caller.kind == "robot":
                assert caller.username is not None
                secret = self.secrets[caller.username]
            self.sessions[caller.id] = DockerLike(self.http, caller, secret)
        return self.sessions[caller.id]

    @property
    def admin(self) -> Pusher:
        return Pusher(self.session(BY_ID["site-admin"]))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp("isolation")
    secrets = seed_data_dir(data_dir, SEED)
    process = start_registry(data_dir, extra_env=token_env())
    http = httpx.Client(base_url=process.url, timeout=30, verify=False)
    try:
        w = World(process, http, secrets)
        for tenant in TENANTS:
            repo = f"{tenant}/app"
            image = make_image(repo, f"isolation-{tenant}")
            w.admin.image(image, "v1")
            w.admin.blob(repo, b"{}")
            artifact = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "artifactType": "application/vnd.berth.test.sig",
                    "config": {"mediaType": OCI_EMPTY, "digest": digest_of(b"{}"), "size": 2},
                    "layers": [
                        {"mediaType": OCI_EMPTY, "digest": digest_of(b"{}"), "size": 2},
                    ],
                    "subject": {
                        "mediaType": OCI_MANIFEST,
                        "digest": image.digest,
                        "size": len(image.manifest),
                    },
                },
                sort_keys=True,
            ).encode()
            w.admin.manifest(repo, digest_of(artifact), artifact)
            mount_source = f"mount source of {tenant}".encode()
            secret = f"secret that only {tenant} has".encode()
            w.admin.blob(repo, mount_source)
            w.admin.blob(repo, secret)
            w.content[tenant] = Content(image, digest_of(artifact), mount_source, secret)
        w.admin.image(make_image(f"{EVIL}/app", "isolation-evil"), "v1")
        yield w
    finally:
        http.close()
        process.stop()


# --------------------------------------------------------------------------- assertions


@dataclass
class Case:
    world: World
    caller: Caller
    tenant: str
    id: str

    @property
    def s(self) -> DockerLike:
        return self.world.session(self.caller)

    @property
    def can(self) -> frozenset[str]:
        return self.caller.can(self.tenant)

    @property
    def other(self) -> str:
        return OTHER[self.tenant]

    @property
    def repo(self) -> str:
        return f"{self.tenant}/app"

    @property
    def mine(self) -> Content:
        return self.world.content[self.tenant]

    @property
    def theirs(self) -> Content:
        return self.world.content[self.other]

    def refused(self, resp: httpx.Response, actions: str) -> None:
        """401 insufficient_scope for exactly the scope asked, and nothing stored leaks."""
        assert resp.status_code == 401, describe(resp)
        params = challenge_params(resp.headers["www-authenticate"])
        assert params.get("error") == "insufficient_scope", describe(resp)
        assert params.get("scope") == f"repository:{self.repo}:{actions}", describe(resp)
        assert "docker-content-digest" not in resp.headers
        assert "location" not in resp.headers
        if resp.request.method != "HEAD":
            assert resp.json()["errors"][0]["code"] == "UNAUTHORIZED", describe(resp)
        leaked = resp.content + repr(dict(resp.headers)).encode()
        for content in self.world.content.values():
            for data in content.all_bytes:
                assert data not in leaked
            for digest in content.all_digests:
                assert digest.encode() not in resp.content

    def admin_status(self, method: str, path: str) -> int:
        return self.world.admin.status(method, path, headers=ACCEPT).status_code


def head_manifest_tag(c: Case) -> None:
    resp = c.s.request("HEAD", f"/v2/{c.repo}/manifests/v1", headers=ACCEPT)
    if "pull" in c.can:
        assert resp.status_code == 200, describe(resp)
        assert resp.headers["docker-content-digest"] == c.mine.image.digest
    else:
        c.refused(resp, "pull")


def get_manifest_tag(c: Case) -> None:
    resp = c.s.request("GET", f"/v2/{c.repo}/manifests/v1", headers=ACCEPT)
    if "pull" in c.can:
        assert resp.status_code == 200, describe(resp)
        assert resp.content == c.mine.image.manifest
    else:
        c.refused(resp, "pull")


def head_manifest_digest(c: Case) -> None:
    resp = c.s.request("HEAD", f"/v2/{c.repo}/manifests/{c.mine.image.digest}", headers=ACCEPT)
    if "pull" in c.can:
        assert resp.status_code == 200, describe(resp)
        assert int(resp.headers["content-length"]) == len(c.mine.image.manifest)
    else:
        c.refused(resp, "pull")


def get_manifest_digest(c: Case) -> None:
    resp = c.s.request("GET", f"/v2/{c.repo}/manifests/{c.mine.image.digest}", headers=ACCEPT)
    if "pull" in c.can:
        assert resp.status_code == 200, describe(resp)
        assert resp.content == c.mine.image.manifest
    else:
        c.refused(resp, "pull")


def head_blob(c: Case) -> None:
    resp = c.s.request("HEAD", f"/v2/{c.repo}/blobs/{c.mine.image.layer_digest}")
    if "pull" in c.can:
        assert resp.status_code == 200, describe(resp)
        assert int(resp.headers["content-length"]) == len(c.mine.image.layer)
    else:
        c.refused(resp, "pull")


def get_blob(c: Case) -> None:
    resp = c.s.request("GET", f"/v2/{c.repo}/blobs/{c.mine.image.layer_digest}")
    if "pull" in c.can:
        assert resp.status_code == 200, describe(resp)
        assert resp.content == c.mine.image.layer
    else:
        c.refused(resp, "pull")


def get_blob_of_other_tenant(c: Case) -> None:
    """The other tenant's blob asked for through a repository of this tenant."""
    for method in ("GET", "HEAD"):
        resp = c.s.request(method, f"/v2/{c.repo}/blobs/{digest_of(c.theirs.secret)}")
        if "pull" in c.can:
            assert resp.status_code == 404, describe(resp)
            if method == "GET":
                assert resp.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
            assert c.theirs.secret not in resp.content
        else:
            c.refused(resp, "pull")


def tags_list(c: Case) -> None:
    resp = c.s.request("GET", f"/v2/{c.repo}/tags/list")
    if "pull" in c.can:
        assert resp.status_code == 200, describe(resp)
        assert resp.json()["name"] == c.repo
        assert "v1" in resp.json()["tags"]
    else:
        c.refused(resp, "pull")


def referrers(c: Case) -> None:
    resp = c.s.request("GET", f"/v2/{c.repo}/referrers/{c.mine.image.digest}")
    if "pull" in c.can:
        assert resp.status_code == 200, describe(resp)
        assert [m["digest"] for m in resp.json()["manifests"]] == [c.mine.referrer]
    else:
        c.refused(resp, "pull")


def start_upload(c: Case) -> None:
    resp = c.s.request("POST", f"/v2/{c.repo}/blobs/uploads/")
    if "push" in c.can:
        assert resp.status_code == 202, describe(resp)
        assert resp.headers["location"].startswith(f"/v2/{c.repo}/blobs/uploads/")
    else:
        c.refused(resp, "pull,push")


def patch_upload(c: Case) -> None:
    location = c.world.admin.start_upload(c.repo)
    resp = c.s.request(
        "PATCH",
        location,
        content=b"chunk",
        headers={"Content-Type": "application/octet-stream"},
    )
    if "push" in c.can:
        assert resp.status_code == 202, describe(resp)
        assert resp.headers["range"] == "0-4"
    else:
        c.refused(resp, "pull,push")


def put_manifest(c: Case) -> None:
    image = c.mine.image
    body = manifest_bytes(image.config, [image.layer], {"case": c.id})
    resp = c.s.request(
        "PUT",
        f"/v2/{c.repo}/manifests/by-{c.caller.id}",
        content=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    if "push" in c.can:
        assert resp.status_code == 201, describe(resp)
        assert resp.headers["docker-content-digest"] == digest_of(body)
    else:
        c.refused(resp, "pull,push")
        assert c.admin_status("GET", f"/v2/{c.repo}/manifests/{digest_of(body)}") == 404


def delete_manifest(c: Case) -> None:
    image = c.mine.image
    body = manifest_bytes(image.config, [image.layer], {"delete-me": c.id})
    digest = digest_of(body)
    c.world.admin.manifest(c.repo, digest, body)
    resp = c.s.request("DELETE", f"/v2/{c.repo}/manifests/{digest}")
    after = c.admin_status("GET", f"/v2/{c.repo}/manifests/{digest}")
    if "delete" in c.can:
        assert resp.status_code == 202, describe(resp)
        assert after == 404
    else:
        c.refused(resp, "delete")
        assert after == 200


def delete_blob(c: Case) -> None:
    digest = c.world.admin.blob(c.repo, f"delete-me {c.id}".encode())
    resp = c.s.request("DELETE", f"/v2/{c.repo}/blobs/{digest}")
    after = c.admin_status("HEAD", f"/v2/{c.repo}/blobs/{digest}")
    if "delete" in c.can:
        assert resp.status_code == 202, describe(resp)
        assert after == 404
    else:
        c.refused(resp, "delete")
        assert after == 200


def mount_from_other_tenant(c: Case) -> None:
    digest = digest_of(c.theirs.mount_source)
    source = f"{c.other}/app"
    resp = c.s.request(
        "POST",
        f"/v2/{c.repo}/blobs/uploads/?mount={digest}&from={source}",
        extra_scopes=(f"repository:{source}:pull",),
    )
    if "push" not in c.can:
        c.refused(resp, "pull,push")
    elif "pull" in c.caller.can(c.other):
        assert resp.status_code == 201, describe(resp)
        assert resp.headers["docker-content-digest"] == digest
    else:
        # An unreadable source is silently ignored: a plain upload session, never the blob.
        assert resp.status_code == 202, describe(resp)
        assert resp.headers["location"].startswith(f"/v2/{c.repo}/blobs/uploads/")
        assert "docker-content-digest" not in resp.headers


def automatic_mount(c: Case) -> None:
    """``mount`` without ``from`` looks in the caller's tenant only, whoever the caller is."""
    digest = digest_of(c.theirs.secret)
    resp = c.s.request("POST", f"/v2/{c.repo}/blobs/uploads/?mount={digest}")
    if "push" in c.can:
        assert resp.status_code == 202, describe(resp)
        assert resp.headers["location"].startswith(f"/v2/{c.repo}/blobs/uploads/")
    else:
        c.refused(resp, "pull,push")
    assert c.admin_status("HEAD", f"/v2/{c.repo}/blobs/{digest}") == 404


ACTIONS: dict[str, Callable[[Case], None]] = {
    f.__name__.replace("_", "-"): f
    for f in [
        head_manifest_tag,
        get_manifest_tag,
        head_manifest_digest,
        get_manifest_digest,
        head_blob,
        get_blob,
        get_blob_of_other_tenant,
        tags_list,
        referrers,
        start_upload,
        patch_upload,
        put_manifest,
        delete_manifest,
        delete_blob,
        mount_from_other_tenant,
        automatic_mount,
    ]
}


@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("tenant", TENANTS)
@pytest.mark.parametrize("caller", [c.id for c in CALLERS])
def test_matrix(world: World, caller: str, tenant: str, action: str) -> None:
    ACTIONS[action](Case(world, BY_ID[caller], tenant, f"{caller}-{tenant}-{action}"))


# --------------------------------------------------------------------------- catalog


@pytest.mark.parametrize("caller", list(BY_ID))
def test_catalog_lists_only_pullable_repositories(world: World, caller: str) -> None:
    who = BY_ID[caller]
    everything = world.session(BY_ID["site-admin"]).request("GET", "/v2/_catalog")
    assert everything.status_code == 200, describe(everything)
    all_repos = everything.json()["repositories"]
    assert {"acme/app", "globex/app", "pub/app", f"{EVIL}/app"} <= set(all_repos)
    resp = world.session(who).request("GET", "/v2/_catalog")
    if who.kind == "anonymous":
        # The catalog is for signed-in callers (policy.grant); anonymous gets the challenge.
        assert resp.status_code == 401, describe(resp)
        params = challenge_params(resp.headers["www-authenticate"])
        assert params == {**params, "scope": "registry:catalog:*", "error": "insufficient_scope"}
        assert b"acme" not in resp.content and b"globex" not in resp.content
        return
    assert resp.status_code == 200, describe(resp)
    if who.id == "site-admin":
        expected = all_repos
    else:
        expected = [r for r in all_repos if "pull" in who.can(r.split("/", 1)[0])]
    assert resp.json()["repositories"] == expected


def test_catalog_pagination_never_shows_other_tenants(world: World) -> None:
    session = world.session(BY_ID["acme-reader"])
    seen: list[str] = []
    path = "/v2/_catalog?n=1"
    for _ in range(10):
        resp = session.request("GET", path)
        assert resp.status_code == 200, describe(resp)
        seen += resp.json()["repositories"]
        link = resp.headers.get("link")
        if not link:
            break
        path = link.split(";")[0].strip("<>")
    assert seen == ["acme/app", "pub/app"]


# --------------------------------------------------------------------------- no leaks

LEAK_PROBES: dict[str, tuple[str, str]] = {
    # name: (method, path under /v2/<repo>)
    "get-manifest-tag": ("GET", "/manifests/v1"),
    "head-manifest-tag": ("HEAD", "/manifests/v1"),
    "get-manifest-digest": ("GET", "/manifests/{manifest}"),
    "get-blob": ("GET", "/blobs/{layer}"),
    "head-blob": ("HEAD", "/blobs/{layer}"),
    "tags-list": ("GET", "/tags/list"),
    "referrers": ("GET", "/referrers/{manifest}"),
    "start-upload": ("POST", "/blobs/uploads/"),
    "mount": ("POST", "/blobs/uploads/?mount={layer}&from={repo}"),
    "put-manifest": ("PUT", "/manifests/v1"),
    "delete-manifest": ("DELETE", "/manifests/{manifest}"),
    "delete-blob": ("DELETE", "/blobs/{layer}"),
}


def _normalized(resp: httpx.Response, repo: str) -> tuple[int, str, bytes]:
    challenge = resp.headers.get("www-authenticate", "").replace(repo, "<repo>")
    return resp.status_code, challenge, resp.content


@pytest.mark.parametrize("probe", list(LEAK_PROBES))
@pytest.mark.parametrize(
    ("caller", "tenant"),
    [
        (c.id, t)
        for c in CALLERS
        for t in TENANTS
        if c.id in {"acme-admin", "globex-writer", "acme-robot-push", "anonymous"}
        and "pull" not in c.can(t)
    ],
)
def test_refusal_is_identical_for_existing_and_missing_repositories(
    world: World, caller: str, tenant: str, probe: str
) -> None:
    """A refused caller cannot tell an existing repository from a missing one or tenant."""
    content = world.content[tenant]
    method, template = LEAK_PROBES[probe]
    session = world.session(BY_ID[caller])
    answers = []
    for repo in (f"{tenant}/app", f"{tenant}/ghost", f"{MISSING_TENANT}/app"):
        path = (
            "/v2/"
            + repo
            + template.format(
                manifest=content.image.digest, layer=content.image.layer_digest, repo=repo
            )
        )
        body = content.image.manifest if method == "PUT" else None
        headers = {**ACCEPT, "Content-Type": OCI_MANIFEST} if method == "PUT" else ACCEPT
        resp = session.request(method, path, content=body, headers=headers)
        assert resp.status_code == 401, describe(resp)
        answers.append(_normalized(resp, repo))
    assert answers[0] == answers[1] == answers[2]


@pytest.mark.parametrize("caller", ["acme-reader", "acme-robot-pull", "site-admin", "anonymous"])
def test_not_found_is_identical_for_other_tenants_blob_and_missing_blob(
    world: World, caller: str
) -> None:
    """Through a readable repository, the other tenant's blob looks exactly like no blob."""
    tenant = "pub" if caller == "anonymous" else "acme"
    session = world.session(BY_ID[caller])
    theirs = digest_of(world.content[OTHER[tenant]].secret)
    missing = digest_of(b"nobody has this blob")
    answers = []
    for digest in (theirs, missing):
        resp = session.request("GET", f"/v2/{tenant}/app/blobs/{digest}")
        assert resp.status_code == 404, describe(resp)
        answers.append((resp.status_code, resp.content.replace(digest.encode(), b"<digest>")))
    assert answers[0] == answers[1]


def test_site_admin_cannot_push_into_a_tenant_that_does_not_exist(world: World) -> None:
    session = world.session(BY_ID["site-admin"])
    resp = session.request("POST", f"/v2/{MISSING_TENANT}/app/blobs/uploads/")
    assert resp.status_code == 401, describe(resp)
    assert challenge_params(resp.headers["www-authenticate"])["error"] == "insufficient_scope"


# --------------------------------------------------------------------------- prefixes, uploads


def test_tenant_sharing_a_name_prefix_gets_nothing_of_the_other(world: World) -> None:
    evil = world.session(EVIL_ADMIN)
    acme = world.content["acme"]
    # Its own tenant works...
    resp = evil.request("GET", f"/v2/{EVIL}/app/tags/list")
    assert resp.status_code == 200, describe(resp)
    # ...acme's repositories do not.
    for method, path in [
        ("GET", f"/v2/acme/app/manifests/{acme.image.digest}"),
        ("GET", f"/v2/acme/app/blobs/{acme.image.layer_digest}"),
        ("POST", "/v2/acme/app/blobs/uploads/"),
        ("DELETE", f"/v2/acme/app/manifests/{acme.image.digest}"),
    ]:
        resp = evil.request(method, path)
        assert resp.status_code == 401, describe(resp)
        assert challenge_params(resp.headers["www-authenticate"])["error"] == "insufficient_scope"
    # Automatic mounts look in acme-evil only, not in every name starting with "acme".
    secret = digest_of(acme.secret)
    resp = evil.request("POST", f"/v2/{EVIL}/app/blobs/uploads/?mount={secret}")
    assert resp.status_code == 202, describe(resp)
    resp = evil.request("GET", f"/v2/{EVIL}/app/blobs/{secret}")
    assert resp.status_code == 404, describe(resp)
    # And the other way round: acme's admin cannot reach into acme-evil.
    acme_admin = world.session(BY_ID["acme-admin"])
    resp = acme_admin.request("GET", f"/v2/{EVIL}/app/tags/list")
    assert resp.status_code == 401, describe(resp)


@pytest.mark.parametrize("method", ["PATCH", "PUT", "GET", "DELETE"])
def test_upload_session_of_another_tenant_cannot_be_used(world: World, method: str) -> None:
    """An upload id from globex, presented through acme's own repository, is unknown there."""
    globex_upload = world.admin.start_upload("globex/app")
    upload_id = globex_upload.rsplit("/", 1)[1]
    data = b"stolen chunk"
    path = f"/v2/acme/app/blobs/uploads/{upload_id}"
    if method == "PUT":
        path += f"?digest={digest_of(data)}"
    acme_writer = world.session(BY_ID["acme-writer"])
    resp = acme_writer.request(
        method,
        path,
        content=data if method in ("PATCH", "PUT") else None,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert resp.status_code == 404, describe(resp)
    assert resp.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    # The session is untouched in globex.
    status = world.admin.status("GET", globex_upload)
    assert status.status_code == 204, describe(status)
    assert status.headers["range"] == "0-0"
