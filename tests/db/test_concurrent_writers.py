"""Writers racing for the same row, on SQLite and PostgreSQL (tests/db/conftest.py).

Replicas of one registry share one database, so two pushes of one tag, one blob or one upload
chunk may reach it at once. What keeps them consistent must be the database: on SQLite every
write transaction takes the write lock up front (BEGIN IMMEDIATE); on PostgreSQL, READ
COMMITTED with unique constraints (INSERT ... ON CONFLICT) and row locks (UPSERT, the
compare-and-set UPDATE of an upload claim).

The first tests make the race certain, not likely: one transaction writes and stays open, the
second is shown to be waiting on it, then the first commits (or rolls back) and the second
must land on a consistent answer. The others run eight writers at once, each the transaction
the API runs for that request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select

from registry.db.blobs import BlobStore
from registry.db.manifests import ManifestStore
from registry.db.models import Blob, Manifest, Repository, RepositoryBlob, Tag, utcnow
from registry.db.repositories import RepositoryStore
from registry.db.session import Database
from registry.db.tags import TagStore
from registry.db.uploads import UploadStore
from registry.oci import manifest as oci_manifest
from registry.oci import mediatypes as mt
from registry.oci.digest import sha256

pytestmark = pytest.mark.anyio

T = TypeVar("T")
PARALLEL = 8
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# Long enough for the second writer to reach the point where it waits.
SETTLE = 0.3


def manifest(seed: str) -> tuple[bytes, oci_manifest.Manifest, list[bytes]]:
    """A manifest's payload, parsed, and the blobs it references."""
    config, layer = f"config {seed}".encode(), f"layer {seed}".encode()
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}],
    }
    payload = json.dumps(body).encode()
    return payload, oci_manifest.parse(payload, mt.OCI_MANIFEST), [config, layer]


async def finish_blob(db: Database, repository: str, content: bytes) -> None:
    """The transaction that ends a blob upload (api/uploads.py: _finish)."""
    async with db.write() as session:
        repo_id = await RepositoryStore(session).get_or_create(repository)
        blobs = BlobStore(session)
        await blobs.add(sha256(content), len(content))
        await blobs.link(repo_id, sha256(content))


async def put_tagged(db: Database, repository: str, tag: str, payload: bytes, parsed: Any) -> int:
    """The transaction of a manifest PUT by tag (api/manifests.py: put_manifest)."""
    async with db.write() as session:
        repo_id = await RepositoryStore(session).get_or_create(repository)
        missing = await BlobStore(session).missing(
            repo_id, (d.digest for d in parsed.blob_references())
        )
        assert not missing
        manifest_id = await ManifestStore(session).put(repo_id, sha256(payload), payload, parsed)
        await TagStore(session).set(repo_id, tag, manifest_id)
        return manifest_id


async def count(db: Database, model: Any, *where: Any) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)))


async def waits(task: asyncio.Task[T]) -> bool:
    """Whether ``task`` is still blocked after a moment (on a lock, or on a conflicting row)."""
    await asyncio.sleep(SETTLE)
    return not task.done()


async def settled(task: asyncio.Task[T]) -> T:
    return await asyncio.wait_for(task, 30)


def start(work: Awaitable[T]) -> asyncio.Task[T]:
    return asyncio.ensure_future(work)


# --- one writer holds the row, the other waits ---------------------------------------------------


async def test_repository_created_by_two_writers_is_one_row(db: Database) -> None:
    async with db.write() as first:
        first_id = await RepositoryStore(first).get_or_create("race/app")

        async def second_writer() -> int:
            async with db.write() as session:
                return await RepositoryStore(session).get_or_create("race/app")

        second = start(second_writer())
        assert await waits(second)
    assert await settled(second) == first_id
    assert await count(db, Repository) == 1


async def test_same_manifest_put_by_two_writers_is_one_row(db: Database) -> None:
    payload, parsed, blobs = manifest("same")
    for content in blobs:
        await finish_blob(db, "race/app", content)
    async with db.write() as first:
        repo_id = await RepositoryStore(first).get_or_create("race/app")
        first_id = await ManifestStore(first).put(repo_id, sha256(payload), payload, parsed)

        async def second_writer() -> int:
            async with db.write() as session:
                return await ManifestStore(session).put(repo_id, sha256(payload), payload, parsed)

        second = start(second_writer())
        assert await waits(second)
    assert await settled(second) == first_id
    assert await count(db, Manifest) == 1


async def test_tag_moved_by_two_writers_ends_at_the_later_one(db: Database) -> None:
    ids = []
    for seed in ("one", "two"):
        payload, parsed, blobs = manifest(seed)
        for content in blobs:
            await finish_blob(db, "race/app", content)
        async with db.write() as session:
            repo_id = await RepositoryStore(session).get_or_create("race/app")
            ids.append(await ManifestStore(session).put(repo_id, sha256(payload), payload, parsed))
    async with db.write() as first:
        await TagStore(first).set(repo_id, "latest", ids[0])

        async def second_writer() -> None:
            async with db.write() as session:
                await TagStore(session).set(repo_id, "latest", ids[1])

        second = start(second_writer())
        assert await waits(second)
    await settled(second)
    async with db.read() as session:
        assert await session.scalar(select(Tag.manifest_id).where(Tag.name == "latest")) == ids[1]
    assert await count(db, Tag) == 1


async def test_same_blob_finished_by_two_writers_is_one_row(db: Database) -> None:
    content = b"the same layer, pushed twice"
    async with db.write() as first:
        repo_id = await RepositoryStore(first).get_or_create("race/a")
        await BlobStore(first).add(sha256(content), len(content))
        await BlobStore(first).link(repo_id, sha256(content))
        second = start(finish_blob(db, "race/b", content))
        assert await waits(second)
    await settled(second)
    assert await count(db, Blob) == 1
    assert await count(db, RepositoryBlob) == 2


@pytest.mark.parametrize("first_commits", [True, False], ids=["first-commits", "first-aborts"])
async def test_upload_claim_waits_for_the_holder_and_rechecks(
    db: Database, first_commits: bool
) -> None:
    """A compare-and-set claim: the loser re-reads the row the winner left, never its own
    stale snapshot; if the winner rolls back, the waiting claim takes the upload."""
    repo_id = await make_repo(db, "race/app")
    async with db.write() as session:
        await UploadStore(session).create("u", repo_id)
    until = utcnow() + timedelta(hours=1)

    async def second_writer() -> bool:
        async with db.write() as session:
            return await UploadStore(session).claim("u", 0, "second", until)

    class Abort(Exception):
        pass

    second: asyncio.Task[bool] | None = None
    try:
        async with db.write() as first:
            assert await UploadStore(first).claim("u", 0, "first", until) is True
            second = start(second_writer())
            assert await waits(second)
            if not first_commits:
                raise Abort
    except Abort:
        pass
    assert second is not None
    assert await settled(second) is (not first_commits)


async def make_repo(db: Database, name: str) -> int:
    async with db.write() as session:
        return await RepositoryStore(session).get_or_create(name)


# --- eight writers at once ----------------------------------------------------------------------


async def test_parallel_puts_of_different_manifests_to_one_tag(db: Database) -> None:
    pushes = [manifest(f"racer-{i}") for i in range(PARALLEL)]
    for _, _, blobs in pushes:
        for content in blobs:
            await finish_blob(db, "race/app", content)
    ids = await asyncio.gather(
        *(put_tagged(db, "race/app", "latest", payload, parsed) for payload, parsed, _ in pushes)
    )
    assert len(set(ids)) == PARALLEL
    async with db.read() as session:
        repo_id = await RepositoryStore(session).get_id("race/app")
        assert repo_id is not None
        tagged = await ManifestStore(session).by_tag(repo_id, "latest")
        assert tagged is not None and tagged.id in ids
        # Every manifest is whole, whichever one the tag ended at.
        for (payload, _, _), manifest_id in zip(pushes, ids, strict=True):
            assert await ManifestStore(session).payload(manifest_id) == payload
    assert await count(db, Tag) == 1
    assert await count(db, Manifest) == PARALLEL
    assert await count(db, Repository) == 1


async def test_parallel_pushes_into_a_new_repository(db: Database) -> None:
    """Eight first pushes race to create the repository: one row, every manifest in it."""
    payload, parsed, blobs = manifest("shared")
    await asyncio.gather(*(finish_blob(db, "race/new", content) for content in blobs))
    ids = await asyncio.gather(
        *(put_tagged(db, "race/new", f"v{i}", payload, parsed) for i in range(PARALLEL))
    )
    assert len(set(ids)) == 1
    assert await count(db, Repository) == 1
    assert await count(db, Manifest) == 1
    assert await count(db, Tag) == PARALLEL


@pytest.mark.parametrize("same_repo", [True, False], ids=["same-repo", "different-repos"])
async def test_parallel_finishes_of_one_blob(db: Database, same_repo: bool) -> None:
    content = b"one layer, eight uploads"
    repos = ["race/shared" if same_repo else f"race/r{i}" for i in range(PARALLEL)]
    await asyncio.gather(*(finish_blob(db, repo, content) for repo in repos))
    assert await count(db, Blob) == 1
    assert await count(db, RepositoryBlob) == len(set(repos))
    async with db.read() as session:
        for repo in set(repos):
            found = await BlobStore(session).linked_by_name(repo, sha256(content))
            assert found is not None and found.size == len(content)


async def test_parallel_claims_of_one_upload_admit_one(db: Database) -> None:
    repo_id = await make_repo(db, "race/app")
    async with db.write() as session:
        await UploadStore(session).create("u", repo_id)

    async def claim_and_advance(holder: int) -> bool:
        async with db.write() as session:
            uploads = UploadStore(session)
            if not await uploads.claim("u", 0, f"h{holder}", utcnow() + timedelta(hours=1)):
                return False
            return await uploads.advance("u", f"h{holder}", holder + 1, {"by": holder})

    results = await asyncio.gather(*(claim_and_advance(i) for i in range(PARALLEL)))
    assert results.count(True) == 1
    winner = results.index(True)
    async with db.read() as session:
        got = await UploadStore(session).get("u", repo_id)
    assert got is not None
    assert (got.size, got.writer_state) == (winner + 1, {"by": winner})
