"""The metadata stores in registry/db/, against a real migrated database."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from registry.db.blobs import BlobRecord, BlobStore
from registry.db.identities import IdentityStore
from registry.db.manifests import ManifestStore, ReferrerRecord
from registry.db.models import (
    Blob,
    ManifestBlob,
    ManifestReference,
    Repository,
    Tag,
    UploadSession,
    utcnow,
)
from registry.db.repositories import RepositoryStore
from registry.db.session import Database, execute_sql, fetch_rows
from registry.db.tags import TagStore
from registry.db.uploads import UploadStore
from registry.oci import manifest as oci_manifest
from registry.oci import mediatypes as mt
from registry.oci.digest import sha256

pytestmark = pytest.mark.anyio

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
FOREIGN_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
EMPTY_JSON = b"{}"
SBOM = "application/vnd.example.sbom.v1+json"
SIGNATURE = "application/vnd.example.signature.v1"


# --- helpers ----------------------------------------------------------------------------------


async def make_repo(db: Database, name: str) -> int:
    async with db.write() as session:
        return await RepositoryStore(session).get_or_create(name)


async def add_blob(db: Database, repo_id: int, content: bytes) -> str:
    digest = sha256(content)
    async with db.write() as session:
        blobs = BlobStore(session)
        await blobs.add(digest, len(content))
        await blobs.link(repo_id, digest)
    return digest


def desc(media_type: str, content: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(content), "size": len(content), **extra}


def image_body(seed: str, **extra: Any) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": desc(OCI_CONFIG, f"config {seed}".encode()),
        "layers": [desc(OCI_LAYER, f"layer {seed}".encode())],
        **extra,
    }


def artifact_body(subject: str, artifact_type: str | None, seed: str, **extra: Any) -> dict:
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": desc(mt.OCI_EMPTY, EMPTY_JSON),
        "layers": [desc(OCI_LAYER, f"artifact {seed}".encode())],
        "subject": {"mediaType": mt.OCI_MANIFEST, "digest": subject, "size": 123},
        **extra,
    }
    if artifact_type is not None:
        body["artifactType"] = artifact_type
    return body


async def put_manifest(db: Database, repo_id: int, body: dict[str, Any]) -> tuple[int, str]:
    """Store the blobs the body references, then the manifest: (manifest id, digest)."""
    payload = json.dumps(body, indent=1).encode()
    parsed = oci_manifest.parse(payload, body.get("mediaType"))
    for ref in parsed.blob_references():
        async with db.write() as session:
            await BlobStore(session).add(ref.digest, ref.size)
            await BlobStore(session).link(repo_id, ref.digest)
    digest = sha256(payload)
    async with db.write() as session:
        manifest_id = await ManifestStore(session).put(repo_id, digest, payload, parsed)
    return manifest_id, digest


async def count(db: Database, model: Any, *where: Any) -> int:
    async with db.read() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where))


# --- repositories -----------------------------------------------------------------------------


async def test_get_or_create_is_idempotent(db: Database) -> None:
    first = await make_repo(db, "acme/app")
    assert await make_repo(db, "acme/app") == first
    async with db.write() as session:
        repos = RepositoryStore(session)
        assert await repos.get_or_create("acme/app") == first
        assert await repos.get_or_create("acme/app") == first
        other = await repos.get_or_create("acme/other")
    assert other != first
    assert await count(db, Repository) == 2


async def test_get_id(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    async with db.read() as session:
        assert await RepositoryStore(session).get_id("acme/app") == repo_id
        assert await RepositoryStore(session).get_id("acme/nope") is None


async def test_concurrent_get_or_create_agree(db: Database) -> None:
    ids = await asyncio.gather(*(make_repo(db, "acme/race") for _ in range(5)))
    assert len(set(ids)) == 1
    assert await count(db, Repository) == 1


async def test_catalog_lists_only_repositories_with_content(db: Database) -> None:
    await make_repo(db, "empty/repo")
    with_blob = await make_repo(db, "b/with-blob")
    await add_blob(db, with_blob, b"layer")
    with_manifest = await make_repo(db, "a/with-manifest")
    await put_manifest(db, with_manifest, image_body("x"))
    only_unlinked = await make_repo(db, "c/unlinked")
    digest = await add_blob(db, only_unlinked, b"gone")
    async with db.write() as session:
        await BlobStore(session).unlink(only_unlinked, digest)

    async with db.read() as session:
        assert await RepositoryStore(session).catalog(None, None) == [
            "a/with-manifest",
            "b/with-blob",
        ]


async def test_catalog_orders_and_paginates(db: Database) -> None:
    names = ["m/z", "a/b", "a-b/c", "a/b/c", "a.b/c", "a_b/c", "ab/c", "0/x", "a/b-c", "a/b.c"]
    for name in names:
        await add_blob(db, await make_repo(db, name), name.encode())
    # Byte order, as Distribution lists names, and the same on every backend. (A PostgreSQL
    # database whose collation is not "C" would sort "a_b/c" before "a-b/c" here.)
    expected = sorted(names)

    async with db.read() as session:
        repos = RepositoryStore(session)
        assert await repos.catalog(None, None) == expected
        assert await repos.catalog(3, None) == expected[:3]
        assert await repos.catalog(3, expected[2]) == expected[3:6]
        assert await repos.catalog(None, expected[5]) == expected[6:]
        assert await repos.catalog(100, expected[-1]) == []
        # `last` need not be a repository that exists.
        assert await repos.catalog(None, "a/b0") == [n for n in expected if n > "a/b0"]
        assert await repos.catalog(0, None) == []

        pages, last = [], None
        while page := await repos.catalog(4, last):
            pages.append(page)
            last = page[-1]
        assert [len(p) for p in pages] == [4, 4, 2]
        assert sum(pages, []) == expected


# --- blobs ------------------------------------------------------------------------------------


async def test_blob_add_get_link(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    other_id = await make_repo(db, "acme/other")
    digest = sha256(b"content")
    async with db.write() as session:
        blobs = BlobStore(session)
        assert await blobs.get(digest) is None
        await blobs.add(digest, 7)
        await blobs.add(digest, 7)  # a second push of the same blob changes nothing
        assert await blobs.get(digest) == BlobRecord(digest, 7)
        assert await blobs.linked(repo_id, digest) is None
        await blobs.link(repo_id, digest)
        await blobs.link(repo_id, digest)
    async with db.read() as session:
        blobs = BlobStore(session)
        assert await blobs.linked(repo_id, digest) == BlobRecord(digest, 7)
        assert await blobs.linked(other_id, digest) is None
        assert await blobs.linked(repo_id, sha256(b"other")) is None
    assert await count(db, Blob) == 1


async def test_blob_unlink(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    other_id = await make_repo(db, "acme/other")
    digest = await add_blob(db, repo_id, b"content")
    async with db.write() as session:
        await BlobStore(session).link(other_id, digest)
    async with db.write() as session:
        blobs = BlobStore(session)
        assert await blobs.unlink(repo_id, digest) is True
        assert await blobs.unlink(repo_id, digest) is False
        assert await blobs.unlink(repo_id, sha256(b"never")) is False
    async with db.read() as session:
        blobs = BlobStore(session)
        assert await blobs.linked(repo_id, digest) is None
        # Unlinking drops the link only: the blob and other repositories' links remain.
        assert await blobs.linked(other_id, digest) == BlobRecord(digest, 7)
        assert await blobs.get(digest) == BlobRecord(digest, 7)


async def test_blob_missing(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    other_id = await make_repo(db, "acme/other")
    here = await add_blob(db, repo_id, b"here")
    elsewhere = await add_blob(db, other_id, b"elsewhere")
    nowhere = sha256(b"nowhere")
    async with db.read() as session:
        blobs = BlobStore(session)
        assert await blobs.missing(repo_id, [here, elsewhere, nowhere]) == {elsewhere, nowhere}
        assert await blobs.missing(repo_id, [here, here]) == set()
        assert await blobs.missing(repo_id, []) == set()
        assert await blobs.missing(repo_id, iter([nowhere])) == {nowhere}


@pytest.mark.parametrize(
    ("repository", "tenant", "found"),
    [
        ("acme/app", "acme", True),
        ("acme/team/app", "acme", True),
        ("acme", "acme", True),
        ("acme-evil/x", "acme", False),
        ("acmex/y", "acme", False),
        ("acme-evil", "acme", False),
        ("acme/app", "acm", False),
        ("acme_x/app", "acme_x", True),
        # `_` and `%` are LIKE wildcards: they must match only themselves.
        ("abc/app", "a_c", False),
        ("a_c/app", "a_c", True),
        ("abcd/app", "a%", False),
        ("acme/app", "%", False),
        ("acme/app", "_cme", False),
    ],
)
async def test_linked_in_tenant(db: Database, repository: str, tenant: str, found: bool) -> None:
    digest = await add_blob(db, await make_repo(db, repository), b"secret layer")
    async with db.read() as session:
        record = await BlobStore(session).linked_in_tenant(tenant, digest)
    assert record == (BlobRecord(digest, 12) if found else None)


async def test_linked_in_tenant_needs_a_link_not_just_the_blob(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    digest = await add_blob(db, repo_id, b"layer")
    await make_repo(db, "acme/other")
    async with db.write() as session:
        await BlobStore(session).unlink(repo_id, digest)
        assert await BlobStore(session).get(digest) is not None
        assert await BlobStore(session).linked_in_tenant("acme", digest) is None


async def test_linked_in_tenant_with_several_links(db: Database) -> None:
    digest = await add_blob(db, await make_repo(db, "acme/a"), b"layer")
    async with db.write() as session:
        await BlobStore(session).link(
            await RepositoryStore(session).get_or_create("acme/b"), digest
        )
        await BlobStore(session).link(await RepositoryStore(session).get_or_create("x/c"), digest)
    async with db.read() as session:
        assert await BlobStore(session).linked_in_tenant("acme", digest) == BlobRecord(digest, 5)
        assert await BlobStore(session).linked_in_tenant("x", digest) == BlobRecord(digest, 5)
        assert await BlobStore(session).linked_in_tenant("y", digest) is None


# --- manifests --------------------------------------------------------------------------------


async def test_manifest_put_and_read_back(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    body = image_body("one")
    manifest_id, digest = await put_manifest(db, repo_id, body)
    payload = json.dumps(body, indent=1).encode()
    async with db.read() as session:
        manifests = ManifestStore(session)
        record = await manifests.by_digest(repo_id, digest)
        assert record is not None
        assert record.id == manifest_id
        assert record.digest == digest
        assert record.media_type == mt.OCI_MANIFEST
        assert await manifests.payload(record.id) == payload
        assert record.size == len(payload)
        assert await manifests.find("acme/app", digest=digest) == record
        assert await manifests.find("acme/other", digest=digest) is None
        assert await manifests.by_digest(repo_id, sha256(b"other")) is None
        assert await manifests.missing(repo_id, [digest, sha256(b"x")]) == {sha256(b"x")}
        assert await manifests.missing(repo_id, []) == set()


async def test_manifest_put_is_idempotent(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    body = image_body("one")
    first, digest = await put_manifest(db, repo_id, body)
    again, again_digest = await put_manifest(db, repo_id, body)
    assert (again, again_digest) == (first, digest)
    from registry.db.models import Manifest as ManifestRow

    assert await count(db, ManifestRow) == 1
    assert await count(db, ManifestBlob) == 2


async def test_same_manifest_in_two_repositories_is_two_rows(db: Database) -> None:
    a = await make_repo(db, "acme/a")
    b = await make_repo(db, "acme/b")
    id_a, digest = await put_manifest(db, a, image_body("shared"))
    id_b, digest_b = await put_manifest(db, b, image_body("shared"))
    assert digest == digest_b
    assert id_a != id_b
    async with db.write() as session:
        assert await ManifestStore(session).delete(a, digest)
    async with db.read() as session:
        assert await ManifestStore(session).by_digest(a, digest) is None
        assert await ManifestStore(session).by_digest(b, digest) is not None


async def test_manifest_references_blobs(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    body = image_body("refs")
    body["layers"].append(desc(OCI_LAYER, b"config refs"))  # same digest as the config
    body["layers"].append(
        desc(FOREIGN_LAYER, b"foreign", urls=["https://example.com/foreign.tar.gz"])
    )
    manifest_id, _ = await put_manifest(db, repo_id, body)
    async with db.read() as session:
        rows = await session.scalars(
            select(ManifestBlob.blob_digest).where(ManifestBlob.manifest_id == manifest_id)
        )
        # Each blob once; the foreign layer is fetched from its URL, never from us.
        assert set(rows.all()) == {sha256(b"config refs"), sha256(b"layer refs")}


async def test_index_references_children(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    _, amd64 = await put_manifest(db, repo_id, image_body("amd64"))
    _, arm64 = await put_manifest(db, repo_id, image_body("arm64"))
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {"mediaType": mt.OCI_MANIFEST, "digest": amd64, "size": 1},
            {"mediaType": mt.OCI_MANIFEST, "digest": arm64, "size": 1},
            {"mediaType": mt.OCI_MANIFEST, "digest": arm64, "size": 1},
        ],
    }
    index_id, _ = await put_manifest(db, repo_id, index)
    async with db.read() as session:
        children = await session.scalars(
            select(ManifestReference.child_digest).where(ManifestReference.parent_id == index_id)
        )
        assert sorted(children.all()) == sorted([amd64, arm64])
        blobs = await session.scalar(
            select(func.count()).where(ManifestBlob.manifest_id == index_id)
        )
        assert blobs == 0


async def test_manifest_delete_cascades_tags_and_references(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    manifest_id, digest = await put_manifest(db, repo_id, image_body("del"))
    keep_id, keep = await put_manifest(db, repo_id, image_body("keep"))
    index_id, index_digest = await put_manifest(
        db,
        repo_id,
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [{"mediaType": mt.OCI_MANIFEST, "digest": keep, "size": 1}],
        },
    )
    async with db.write() as session:
        tags = TagStore(session)
        await tags.set(repo_id, "latest", manifest_id)
        await tags.set(repo_id, "v1", manifest_id)
        await tags.set(repo_id, "stable", keep_id)
        await tags.set(repo_id, "multi", index_id)

    async with db.write() as session:
        manifests = ManifestStore(session)
        assert await manifests.delete(repo_id, digest) is True
        assert await manifests.delete(repo_id, digest) is False
        assert await manifests.delete(repo_id, index_digest) is True
        assert await manifests.by_digest(repo_id, digest) is None
        assert await manifests.by_tag(repo_id, "latest") is None
        assert await TagStore(session).list(repo_id, None, None) == ["stable"]

    assert await count(db, ManifestBlob, ManifestBlob.manifest_id == manifest_id) == 0
    assert await count(db, ManifestReference, ManifestReference.parent_id == index_id) == 0
    assert await count(db, ManifestBlob, ManifestBlob.manifest_id == keep_id) == 2
    # The blobs themselves stay: garbage collection decides about them.
    assert await count(db, Blob, Blob.digest == sha256(b"layer del")) == 1


async def test_delete_unknown_manifest(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    async with db.write() as session:
        assert await ManifestStore(session).delete(repo_id, sha256(b"nothing")) is False


async def test_referrers(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    _, subject = await put_manifest(db, repo_id, image_body("subject"))
    _, sbom = await put_manifest(
        db, repo_id, artifact_body(subject, SBOM, "sbom", annotations={"k": "v"})
    )
    _, sig = await put_manifest(db, repo_id, artifact_body(subject, SIGNATURE, "sig"))
    # No artifactType: a referrers listing shows the config's media type instead.
    legacy = image_body("legacy")
    legacy["config"] = desc("application/vnd.example.legacy.config+json", b"legacy")
    legacy["subject"] = {"mediaType": mt.OCI_MANIFEST, "digest": subject, "size": 1}
    _, old = await put_manifest(db, repo_id, legacy)
    # Referrers of something else, and of the same subject in another repository.
    _, other_subject = await put_manifest(db, repo_id, image_body("other"))
    await put_manifest(db, repo_id, artifact_body(other_subject, SBOM, "other-sbom"))
    other_repo = await make_repo(db, "acme/other")
    await put_manifest(db, other_repo, artifact_body(subject, SBOM, "elsewhere"))

    sizes = {}
    async with db.read() as session:
        for d in (sbom, sig, old):
            record = await ManifestStore(session).by_digest(repo_id, d)
            assert record is not None
            sizes[d] = record.size
        store = ManifestStore(session)
        assert await store.referrers(repo_id, subject) == [
            ReferrerRecord(sbom, mt.OCI_MANIFEST, sizes[sbom], SBOM, {"k": "v"}),
            ReferrerRecord(sig, mt.OCI_MANIFEST, sizes[sig], SIGNATURE, None),
            ReferrerRecord(
                old,
                mt.OCI_MANIFEST,
                sizes[old],
                "application/vnd.example.legacy.config+json",
                None,
            ),
        ]
        assert [r.digest for r in await store.referrers(repo_id, subject, SBOM)] == [sbom]
        assert [r.digest for r in await store.referrers(repo_id, subject, SIGNATURE)] == [sig]
        legacy_type = "application/vnd.example.legacy.config+json"
        assert [r.digest for r in await store.referrers(repo_id, subject, legacy_type)] == [old]
        assert await store.referrers(repo_id, subject, "application/unknown") == []
        assert await store.referrers(repo_id, sha256(b"no such subject")) == []


async def test_referrers_of_a_subject_not_yet_pushed(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    subject = sha256(b"pushed later")
    _, sbom = await put_manifest(db, repo_id, artifact_body(subject, SBOM, "early"))
    async with db.read() as session:
        assert [r.digest for r in await ManifestStore(session).referrers(repo_id, subject)] == [
            sbom
        ]


# --- tags -------------------------------------------------------------------------------------


async def test_tag_set_and_move(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    one, one_digest = await put_manifest(db, repo_id, image_body("one"))
    two, two_digest = await put_manifest(db, repo_id, image_body("two"))
    async with db.write() as session:
        await TagStore(session).set(repo_id, "latest", one)
    async with db.read() as session:
        record = await ManifestStore(session).by_tag(repo_id, "latest")
        assert record is not None and record.digest == one_digest
    async with db.write() as session:
        await TagStore(session).set(repo_id, "latest", two)
    async with db.read() as session:
        record = await ManifestStore(session).by_tag(repo_id, "latest")
        assert record is not None and record.digest == two_digest
        assert await ManifestStore(session).by_tag(repo_id, "nope") is None
    assert await count(db, Tag) == 1
    # Moving the tag leaves the old manifest in place, untagged.
    async with db.read() as session:
        assert await ManifestStore(session).by_digest(repo_id, one_digest) is not None


async def test_tags_are_per_repository(db: Database) -> None:
    a = await make_repo(db, "acme/a")
    b = await make_repo(db, "acme/b")
    id_a, digest_a = await put_manifest(db, a, image_body("a"))
    id_b, digest_b = await put_manifest(db, b, image_body("b"))
    async with db.write() as session:
        await TagStore(session).set(a, "latest", id_a)
        await TagStore(session).set(b, "latest", id_b)
    async with db.read() as session:
        record_a = await ManifestStore(session).by_tag(a, "latest")
        record_b = await ManifestStore(session).by_tag(b, "latest")
        assert record_a is not None and record_a.digest == digest_a
        assert record_b is not None and record_b.digest == digest_b
        assert await TagStore(session).list(a, None, None) == ["latest"]


async def test_tag_list_orders_and_paginates(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    manifest_id, _ = await put_manifest(db, repo_id, image_body("tags"))
    names = ["v2", "latest", "v10", "v1", "a", "Z", "_x", "1.0", "1.0-rc1", "v1.1"]
    async with db.write() as session:
        for name in names:
            await TagStore(session).set(repo_id, name, manifest_id)
    # Byte order, as Distribution lists tags: "Z" before "a", "_x" after "v2".
    expected = sorted(names)

    async with db.read() as session:
        tags = TagStore(session)
        assert await tags.list(repo_id, None, None) == expected
        assert await tags.list(repo_id, 3, None) == expected[:3]
        assert await tags.list(repo_id, 3, expected[2]) == expected[3:6]
        assert await tags.list(repo_id, None, expected[-2]) == expected[-1:]
        assert await tags.list(repo_id, 5, expected[-1]) == []
        assert await tags.list(repo_id, 0, None) == []
        assert await tags.list(repo_id, None, "") == expected


async def test_tag_delete(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    manifest_id, digest = await put_manifest(db, repo_id, image_body("one"))
    async with db.write() as session:
        await TagStore(session).set(repo_id, "latest", manifest_id)
    async with db.write() as session:
        assert await TagStore(session).delete(repo_id, "latest") is True
        assert await TagStore(session).delete(repo_id, "latest") is False
    async with db.read() as session:
        assert await TagStore(session).list(repo_id, None, None) == []
        assert await ManifestStore(session).by_digest(repo_id, digest) is not None


# --- uploads ----------------------------------------------------------------------------------


async def test_upload_create_get_delete(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    other_id = await make_repo(db, "acme/other")
    async with db.write() as session:
        created = await UploadStore(session).create("upload-1", repo_id)
    assert (created.id, created.repository_id, created.size, created.writer_state) == (
        "upload-1",
        repo_id,
        0,
        None,
    )
    async with db.read() as session:
        uploads = UploadStore(session)
        got = await uploads.get("upload-1", repo_id)
        assert got is not None
        assert (got.id, got.repository_id, got.size, got.writer_state) == (
            "upload-1",
            repo_id,
            0,
            None,
        )
        # An upload is reachable only through the repository it was started in.
        assert await uploads.get("upload-1", other_id) is None
        assert await uploads.get("upload-2", repo_id) is None
    async with db.write() as session:
        assert await UploadStore(session).delete("upload-1") is True
        assert await UploadStore(session).delete("upload-1") is False
    async with db.read() as session:
        assert await UploadStore(session).get("upload-1", repo_id) is None


async def test_upload_claims_admit_one_writer(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    later = utcnow() + timedelta(hours=1)
    async with db.write() as session:
        await UploadStore(session).create("u", repo_id)
    async with db.write() as session:
        uploads = UploadStore(session)
        assert await uploads.claim("u", 0, "first", later) is True
        # A second request that also saw size 0 cannot claim it while the first holds it ...
        assert await uploads.claim("u", 0, "second", later) is False
        # ... nor record progress it never claimed.
        assert await uploads.advance("u", "second", 50, {"parts": 9}) is False
        assert await uploads.claim("missing", 0, "x", later) is False
    async with db.write() as session:
        assert await UploadStore(session).advance("u", "first", 100, {"parts": 1}) is True
    async with db.read() as session:
        got = await UploadStore(session).get("u", repo_id)
        assert got is not None
        assert (got.size, got.writer_state) == (100, {"parts": 1})
    async with db.write() as session:
        uploads = UploadStore(session)
        # A stale size is refused even when nobody holds the upload.
        assert await uploads.claim("u", 0, "late", later) is False
        assert await uploads.claim("u", 100, "next", later) is True
        await uploads.release("u", "next")
        # A lapsed claim (a crashed holder) can be taken over.
        assert await uploads.claim("u", 100, "crashed", utcnow() - timedelta(seconds=1)) is True
        assert await uploads.claim("u", 100, "rescuer", later) is True
        assert await uploads.advance("u", "crashed", 999, {}) is False
        assert await uploads.advance("u", "rescuer", 250, {"parts": 2}) is True
    async with db.read() as session:
        got = await UploadStore(session).get("u", repo_id)
        assert got is not None
        assert (got.size, got.writer_state) == (250, {"parts": 2})


async def test_concurrent_claims_only_one_wins(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    async with db.write() as session:
        await UploadStore(session).create("u", repo_id)

    async def claim_and_advance(holder: str, size: int) -> bool:
        async with db.write() as session:
            uploads = UploadStore(session)
            if not await uploads.claim("u", 0, holder, utcnow() + timedelta(hours=1)):
                return False
            return await uploads.advance("u", holder, size, {"size": size})

    results = await asyncio.gather(claim_and_advance("a", 10), claim_and_advance("b", 20))
    assert sorted(results) == [False, True]
    async with db.read() as session:
        got = await UploadStore(session).get("u", repo_id)
    assert got is not None
    assert got.size == (10 if results[0] else 20)


async def test_upload_expired(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    other_id = await make_repo(db, "tenant2/repo")
    async with db.write() as session:
        uploads = UploadStore(session)
        for upload_id, repo in (("old-1", repo_id), ("old-2", other_id), ("fresh", repo_id)):
            await uploads.create(upload_id, repo)
    long_ago = utcnow() - timedelta(days=2)
    async with db.write() as session:
        await session.execute(
            update(UploadSession)
            .where(UploadSession.id.in_(["old-1", "old-2"]))
            .values(updated_at=long_ago)
        )

    cutoff = utcnow() - timedelta(days=1)
    async with db.read() as session:
        uploads = UploadStore(session)
        assert sorted(await uploads.expired(cutoff)) == [
            ("old-1", "acme/app"),
            ("old-2", "tenant2/repo"),
        ]
        assert len(await uploads.expired(cutoff, limit=1)) == 1
        everything = await uploads.expired(utcnow() + timedelta(minutes=1))
        assert {u for u, _ in everything} == {"old-1", "old-2", "fresh"}
        assert await uploads.expired(long_ago - timedelta(seconds=1)) == []

    # Progress on an upload makes it fresh again.
    async with db.write() as session:
        uploads = UploadStore(session)
        assert await uploads.claim("old-1", 0, "h", utcnow() + timedelta(hours=1)) is True
        assert await uploads.advance("old-1", "h", 10, {}) is True
    async with db.read() as session:
        assert await UploadStore(session).expired(cutoff) == [("old-2", "tenant2/repo")]


# --- identity generation ----------------------------------------------------------------------


async def _generation(db: Database) -> int:
    async with db.read() as session:
        value = await IdentityStore(session).generation()
    assert value is not None
    return value


async def test_every_identity_change_raises_the_generation(db: Database) -> None:
    """What token issue reuses (auth.policy.GrantCache, the login cache) holds only while the
    generation stands: each change to a tenant, user, membership or robot must raise it, made
    through the stores or as plain SQL (triggers, migration 0005)."""
    async with db.write() as session:
        store = IdentityStore(session)
        tenant = await store.create_tenant("gen", public=False)
        user = await store.create_user("gen-user", "hash", is_admin=False)
        robot = await store.create_robot(tenant, "bot", "hash", frozenset({"pull"}), None)
    steps: list[tuple[str, Any]] = [
        ("tenant made public", lambda st: st.set_tenant_public("gen", True)),
        ("member added", lambda st: st.set_member(tenant.id, user.id, "reader")),
        ("role changed", lambda st: st.set_member(tenant.id, user.id, "writer")),
        ("member removed", lambda st: st.remove_member(tenant.id, user.id)),
        ("user disabled", lambda st: st.update_user("gen-user", disabled=True)),
        ("user re-keyed", lambda st: st.update_user("gen-user", password_hash="other")),
        ("robot disabled", lambda st: st.update_robot(robot, disabled=True)),
        (
            "robot changed by SQL",
            lambda st: execute_sql(
                st.session,
                "UPDATE robots SET actions = :a WHERE id = :id",
                {"a": "", "id": robot.id},
            ),
        ),
        ("robot deleted", lambda st: st.delete_robot(robot)),
        ("user deleted", lambda st: st.delete_user("gen-user")),
        ("tenant deleted", lambda st: st.delete_tenant("gen")),
        ("tenant created", lambda st: st.create_tenant("gen2", public=True)),
    ]
    for what, step in steps:
        before = await _generation(db)
        async with db.write() as session:
            await step(IdentityStore(session))
        assert await _generation(db) > before, what


async def test_other_writes_leave_the_generation_alone(db: Database) -> None:
    """Failed logins, refresh tokens and content must not void every cached decision."""
    async with db.write() as session:
        user = await IdentityStore(session).create_user("quiet", "hash", is_admin=False)
    before = await _generation(db)
    async with db.write() as session:
        store = IdentityStore(session)
        await store.record_failures(["account:quiet", "address:127.0.0.1"])
        await store.add_refresh_token("0" * 64, user_id=user.id)
        await RepositoryStore(session).get_or_create("quiet/app")
    assert await _generation(db) == before


async def test_a_rolled_back_change_leaves_the_generation_alone(db: Database) -> None:
    before = await _generation(db)
    with pytest.raises(RuntimeError):
        async with db.write() as session:
            await IdentityStore(session).create_tenant("never", public=False)
            raise RuntimeError("abort")
    assert await _generation(db) == before


# --- plain SQL (fetch_rows / execute_sql) beside the ORM ----------------------------------------


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite's are naive


async def test_plain_sql_and_orm_store_the_same_datetimes(db: Database) -> None:
    repo_id = await make_repo(db, "acme/app")
    async with db.write() as session:
        created = await UploadStore(session).create("u", repo_id)
    async with db.read() as session:
        row = await session.get(UploadSession, "u")
        got = await UploadStore(session).get("u", repo_id)
    assert row is not None and got is not None
    # Written as plain SQL, read back through the ORM and through plain SQL: the same instant.
    assert _utc(row.created_at) == _utc(got.created_at) == created.created_at
    # An ORM comparison finds it on the right side of a cutoff either way.
    async with db.read() as session:
        uploads = UploadStore(session)
        assert await uploads.expired(created.created_at - timedelta(seconds=1)) == []
        assert await uploads.expired(created.created_at + timedelta(seconds=1)) == [
            ("u", "acme/app")
        ]


async def test_plain_sql_and_orm_share_one_write_transaction(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.write() as session:
            repo_id = await RepositoryStore(session).get_or_create("acme/both")  # plain SQL
            # The ORM sees the uncommitted plain-SQL row, and plain SQL the ORM's.
            assert (
                await session.scalar(select(Repository.id).where(Repository.name == "acme/both"))
                == repo_id
            )
            session.add(Repository(name="acme/orm"))
            await session.flush()
            assert await RepositoryStore(session).get_id("acme/orm") is not None
            raise RuntimeError("roll both back")
    async with db.read() as session:
        repos = RepositoryStore(session)
        assert await repos.get_id("acme/both") is None
        assert await repos.get_id("acme/orm") is None
    async with db.write() as session:
        await RepositoryStore(session).get_or_create("acme/both")
        session.add(Repository(name="acme/orm"))
    assert await count(db, Repository) == 2


async def test_plain_sql_errors_are_sqlalchemy_errors(db: Database) -> None:
    # Callers catch SQLAlchemy's exceptions (IntegrityError, OperationalError -> 503): the
    # driver's own must not leak past execute_sql.
    with pytest.raises(IntegrityError):
        async with db.write() as session:
            await BlobStore(session).link(999_999, sha256(b"no such repository"))
    with pytest.raises(DBAPIError):
        async with db.read() as session:
            await fetch_rows(session, "SELECT nothing FROM no_such_table", {})


# --- transactions -----------------------------------------------------------------------------


async def test_write_rolls_back_when_the_block_raises(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.write() as session:
            await RepositoryStore(session).get_or_create("acme/rolled-back")
            raise RuntimeError("boom")
    async with db.read() as session:
        assert await RepositoryStore(session).get_id("acme/rolled-back") is None


async def _read_then_write(db: Database, name: str) -> None:
    # Read first, then write after the other transaction has had time to start: the pattern
    # that makes two deferred SQLite transactions fail to upgrade their read locks.
    async with db.write() as session:
        await session.scalar(select(func.count()).select_from(Repository))
        await asyncio.sleep(0.2)
        await RepositoryStore(session).get_or_create(name)


async def test_concurrent_write_transactions_both_commit(db: Database) -> None:
    await asyncio.gather(_read_then_write(db, "acme/one"), _read_then_write(db, "acme/two"))
    async with db.read() as session:
        repos = RepositoryStore(session)
        assert await repos.get_id("acme/one") is not None
        assert await repos.get_id("acme/two") is not None


async def test_many_concurrent_write_transactions_all_commit(db: Database) -> None:
    names = [f"acme/r{i}" for i in range(8)]
    await asyncio.gather(*(_read_then_write(db, name) for name in names))
    assert await count(db, Repository) == len(names)


async def test_deferred_transactions_would_fail_on_sqlite(db: Database) -> None:
    # The control for the tests above: the same pattern in plain (deferred) transactions
    # fails on SQLite, so their passing is owed to BEGIN IMMEDIATE.
    if not db.is_sqlite:
        pytest.skip("SQLite only")

    async def deferred(name: str) -> None:
        # A plain (deferred) async session, as db.write() would be without BEGIN IMMEDIATE.
        async with db._reader() as session:
            await session.scalar(select(func.count()).select_from(Repository))
            await asyncio.sleep(0.2)
            await RepositoryStore(session).get_or_create(name)
            await session.commit()

    results = await asyncio.gather(
        deferred("acme/one"), deferred("acme/two"), return_exceptions=True
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1
    assert isinstance(failures[0], OperationalError)
    assert "locked" in str(failures[0])
