"""The S3 driver against a real S3 server (SeaweedFS): the shared contract, plus what only S3
can show: parts, pending tails, presigned URLs, aborted uploads, server-side copies."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest

from registry.settings import SettingsError, load_settings
from registry.storage.driver import InvalidOffset, PathNotFound, StorageUnavailable
from registry.storage.s3 import MIN_PART, S3Driver
from tests.storage.contract import DriverContract, MiB, assert_missing, random_chunks
from tests.support.processes import DaemonStartError, free_port
from tests.support.seaweed import SeaweedS3, start_seaweed

PREFIX = "berth-tests"


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedS3]:
    try:
        server = start_seaweed()
    except DaemonStartError as exc:
        # A missing S3 server in CI is a broken environment, never a green suite.
        if os.environ.get("CI"):
            pytest.fail(f"SeaweedFS did not start: {exc}")
        pytest.skip(f"SeaweedFS did not start: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bucket(seaweed: SeaweedS3) -> str:
    return seaweed.create_bucket(f"berth-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="module")
def s3(seaweed: SeaweedS3) -> Any:
    """A raw boto3 client, to look below the driver."""
    return seaweed.client()


@pytest.fixture(scope="module")
def make_driver(seaweed: SeaweedS3, bucket: str) -> Iterator[Callable[..., S3Driver]]:
    made: list[S3Driver] = []

    def make(**options: Any) -> S3Driver:
        settings: dict[str, Any] = {
            "prefix": PREFIX,
            "region": seaweed.region,
            "endpoint_url": seaweed.endpoint_url,
            "path_style": True,
            "access_key_id": seaweed.access_key_id,
            "secret_access_key": seaweed.secret_access_key,
            **options,
        }
        d = S3Driver(settings.pop("bucket", bucket), **settings)
        made.append(d)
        return d

    yield make
    for d in made:
        anyio.run(d.close)


@pytest.fixture(scope="module")
def driver(make_driver: Callable[..., S3Driver]) -> S3Driver:
    # Module-scoped (one boto3 client): the contract's many small tests need no fresh client.
    return make_driver()


def raw_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def multipart_uploads(s3: Any, bucket: str, prefix: str) -> list[tuple[str, str]]:
    result = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return [(u["Key"], u["UploadId"]) for u in result.get("Uploads", [])]


@pytest.fixture
def leftover_check(driver: S3Driver, s3: Any, bucket: str) -> Callable[[str], None]:
    def check(prefix: str) -> None:
        # list() hides pending tails and S3 hides uncompleted uploads: ask the bucket itself.
        key = driver.key(prefix)
        assert raw_keys(s3, bucket, key) == []
        assert multipart_uploads(s3, bucket, key) == []

    return check


class TestS3Driver(DriverContract):
    pass


# -- S3 only ---------------------------------------------------------------------------------------


@pytest.fixture
def scratch(driver: S3Driver, s3: Any, bucket: str) -> Iterator[str]:
    """A fresh prefix for one S3-only test; like the contract's, it must be left clean."""
    prefix = f"/s3-{uuid.uuid4().hex}"
    yield prefix
    with contextlib.suppress(PathNotFound):
        anyio.run(driver.delete, prefix)
    key = driver.key(prefix)
    assert raw_keys(s3, bucket, key) == []
    assert multipart_uploads(s3, bucket, key) == []


def resume_state(state: dict[str, Any]) -> dict[str, Any]:
    """What the database gives back: the state after a JSON round trip."""
    return json.loads(json.dumps(state))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("part_size", "chunks_per_session"), [(5 * MiB, 1), (8 * MiB, 1), (8 * MiB, 3)]
)
async def test_multipart_across_many_small_resumes(
    make_driver: Callable[..., S3Driver],
    s3: Any,
    bucket: str,
    scratch: str,
    part_size: int,
    chunks_per_session: int,
) -> None:
    # 12 MiB in 1 MiB PATCH-like chunks; after every few, the session ends and another resumes.
    d = make_driver(part_size=part_size)
    path = f"{scratch}/uploads/u/data"
    h = hashlib.sha256()
    w = await d.writer(path)
    for n, chunk in enumerate(random_chunks(7, 12 * MiB, low=MiB, high=MiB), start=1):
        await w.write(chunk)
        h.update(chunk)
        if n % chunks_per_session:
            continue
        await w.close()
        state = resume_state(w.state())
        assert state["size"] == n * MiB
        assert state["size"] == sum(p["Size"] for p in state["parts"]) + state["pending"]
        # Parts are never below S3's minimum; a shorter tail waits in a pending object.
        assert state["pending"] < MIN_PART
        assert all(MIN_PART <= p["Size"] <= part_size for p in state["parts"])
        # Nothing at the path, nothing listed: the tail is a reserved, hidden object.
        await assert_missing(d, path)
        assert await d.list(f"{scratch}/uploads/u") == []
        w = await d.writer(path, resume=state)
        assert w.size == state["size"]
        # Tails of earlier sessions are cleared on resume: one hidden object, not one per PATCH.
        hidden = raw_keys(s3, bucket, d.key(f"{scratch}/uploads/u") + "/.tmp-")
        assert len(hidden) == 1, hidden
    assert len(state["parts"]) >= 2
    await w.commit()
    assert (await d.stat(path)).size == 12 * MiB
    digest = hashlib.sha256()
    async for chunk in await d.reader(path):
        digest.update(chunk)
    assert digest.hexdigest() == h.hexdigest()
    assert await d.list(f"{scratch}/uploads/u") == [path]
    assert raw_keys(s3, bucket, d.key(f"{scratch}/uploads/u")) == [d.key(path)]
    assert multipart_uploads(s3, bucket, d.key(scratch)) == []


@pytest.mark.anyio
async def test_pending_tail_is_stored_but_never_listed(
    driver: S3Driver, s3: Any, bucket: str, scratch: str
) -> None:
    path = f"{scratch}/dir/data"
    await driver.put_content(f"{scratch}/dir/other", b"x")
    w = await driver.writer(path)
    await w.write(b"tail bytes")
    await w.close()
    state = w.state()
    assert (state["pending"], state["parts"], state["upload_id"]) == (10, [], None)
    hidden = [k for k in raw_keys(s3, bucket, driver.key(f"{scratch}/dir") + "/") if "/.tmp-" in k]
    assert len(hidden) == 1
    assert await driver.list(f"{scratch}/dir") == [f"{scratch}/dir/other"]
    assert await driver.list(scratch) == [f"{scratch}/dir"]
    w = await driver.writer(path, resume=state)
    await w.commit()
    assert await driver.get_content(path) == b"tail bytes"
    assert sorted(raw_keys(s3, bucket, driver.key(f"{scratch}/dir") + "/")) == [
        driver.key(f"{scratch}/dir/data"),
        driver.key(f"{scratch}/dir/other"),
    ]


@pytest.mark.anyio
async def test_cancel_aborts_the_multipart_upload(
    make_driver: Callable[..., S3Driver], s3: Any, bucket: str, scratch: str
) -> None:
    d = make_driver(part_size=5 * MiB)
    path = f"{scratch}/cancelled"
    w = await d.writer(path)
    await w.write(b"p" * (6 * MiB))
    await w.close()
    state = resume_state(w.state())
    assert len(state["parts"]) == 1
    assert [k for k, _ in multipart_uploads(s3, bucket, d.key(scratch))] == [d.key(path)]
    w = await d.writer(path, resume=state)
    await w.write(b"q" * MiB)
    await w.cancel()
    assert multipart_uploads(s3, bucket, d.key(scratch)) == []
    assert raw_keys(s3, bucket, d.key(scratch)) == []
    with pytest.raises(InvalidOffset):
        await d.writer(path, resume=state)


@pytest.mark.anyio
async def test_resume_from_older_state_discards_newer_parts(
    make_driver: Callable[..., S3Driver], s3: Any, bucket: str, scratch: str
) -> None:
    d = make_driver(part_size=5 * MiB)
    path = f"{scratch}/rolled-back"
    first = random_chunks(8, 7 * MiB, high=MiB)
    expected = b"".join(first)
    w = await d.writer(path)
    await w.write(expected)
    await w.close()
    early = resume_state(w.state())
    assert (len(early["parts"]), early["pending"]) == (1, 2 * MiB)

    # A session that moved the early tail into new parts, but whose state was never recorded.
    lost = await d.writer(path, resume=early)
    await lost.write(b"J" * (9 * MiB))
    await lost.close()
    late = resume_state(lost.state())
    assert len(late["parts"]) == 3

    w = await d.writer(path, resume=early)
    assert w.size == 7 * MiB
    await w.close()
    with pytest.raises(InvalidOffset):
        await d.writer(path, resume=late)
    w = await d.writer(path, resume=early)
    await w.write(b"end")
    await w.commit()
    assert await d.get_content(path) == expected + b"end"
    # The lost session's extra parts were left out of the completed object.
    assert multipart_uploads(s3, bucket, d.key(scratch)) == []


@pytest.mark.anyio
async def test_resume_rejects_states_that_do_not_match(
    make_driver: Callable[..., S3Driver], scratch: str
) -> None:
    d = make_driver(part_size=5 * MiB)
    path = f"{scratch}/mismatch"
    w = await d.writer(path)
    await w.write(b"m" * (5 * MiB + 100))
    await w.close()
    state = resume_state(w.state())
    bad_states = [
        {**state, "size": state["size"] + 1},
        {**state, "pending": 99, "size": state["size"] - 1},
        {**state, "pending_sha256": "0" * 64},
        {**state, "upload_id": "no-such-upload"},
        {**state, "parts": [{**state["parts"][0], "ETag": '"0000"'}]},
        {**state, "parts": []},
        {"size": state["size"]},
        {},
    ]
    for bad in bad_states:
        with pytest.raises(InvalidOffset):
            await d.writer(path, resume=bad)
    w = await d.writer(path, resume=state)
    await w.commit()
    assert (await d.stat(path)).size == 5 * MiB + 100


@pytest.mark.anyio
async def test_move_of_multipart_object(
    make_driver: Callable[..., S3Driver], s3: Any, bucket: str, scratch: str
) -> None:
    d = make_driver(part_size=5 * MiB)
    source, dest = f"{scratch}/uploads/u/data", f"{scratch}/blobs/ab/data"
    w = await d.writer(source)
    h = hashlib.sha256()
    for chunk in random_chunks(9, 13 * MiB + 5):
        await w.write(chunk)
        h.update(chunk)
    await w.commit()
    head = s3.head_object(Bucket=bucket, Key=d.key(source))
    assert head["ETag"].strip('"').endswith("-3")  # really a multipart object
    await d.move(source, dest)
    await assert_missing(d, source)
    assert hashlib.sha256(await d.get_content(dest)).hexdigest() == h.hexdigest()


@pytest.mark.anyio
async def test_move_beyond_copy_limit_uses_part_copies(
    make_driver: Callable[..., S3Driver], s3: Any, bucket: str, scratch: str
) -> None:
    # CopyObject stops at 5 GiB; lower the limit to run the UploadPartCopy path for real.
    d = make_driver(part_size=5 * MiB)
    d.copy_threshold = 6 * MiB
    d.copy_part_size = 5 * MiB
    source, dest = f"{scratch}/big", f"{scratch}/moved/big"
    data = b"".join(random_chunks(10, 17 * MiB + 3))
    await d.put_content(source, data)
    await d.move(source, dest)
    await assert_missing(d, source)
    assert await d.get_content(dest) == data
    assert s3.head_object(Bucket=bucket, Key=d.key(dest))["ETag"].strip('"').endswith("-4")
    assert multipart_uploads(s3, bucket, d.key(scratch)) == []


@pytest.mark.anyio
async def test_redirect_url_is_presigned_for_the_public_endpoint(
    make_driver: Callable[..., S3Driver], seaweed: SeaweedS3, scratch: str
) -> None:
    public = seaweed.endpoint_url.replace("127.0.0.1", "localhost")
    d = make_driver(redirect=True, public_endpoint_url=public, presign_expiry_seconds=60)
    path = f"{scratch}/redirected"
    await d.put_content(path, b"fetch me directly")
    url = await d.redirect_url(path)
    assert url is not None
    parsed = httpx.URL(url)
    assert (parsed.host, parsed.port) == ("localhost", httpx.URL(public).port)
    assert "X-Amz-Signature" in url and "X-Amz-Expires=60" in url
    async with httpx.AsyncClient() as client:
        got = await client.get(url)
        assert (got.status_code, got.content) == (200, b"fetch me directly")
        head_url = await d.redirect_url(path, "HEAD")
        assert head_url is not None
        head = await client.head(head_url)
        assert (head.status_code, head.headers["content-length"]) == (200, "17")
    plain = make_driver()
    assert await plain.redirect_url(path) is None


@pytest.mark.anyio
async def test_unreachable_store_is_unavailable(make_driver: Callable[..., S3Driver]) -> None:
    d = make_driver(endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1)
    for call in (d.get_content, d.stat, d.list, d.delete):
        with pytest.raises(StorageUnavailable):
            await call("/anything")
    with pytest.raises(StorageUnavailable):
        await d.put_content("/anything", b"x")


def test_settings_build_an_s3_driver(tmp_path: Any) -> None:
    from registry.app import build_driver

    settings = load_settings(
        environ={
            "BERTH_STORAGE__DRIVER": "s3",
            "BERTH_STORAGE__S3__BUCKET": "blobs",
            "BERTH_STORAGE__S3__PREFIX": "/registry/",
            "BERTH_STORAGE__S3__ENDPOINT_URL": "http://127.0.0.1:9",
            "BERTH_STORAGE__S3__PATH_STYLE": "true",
            "BERTH_STORAGE__S3__PART_SIZE": str(16 * MiB),
        }
    )
    d = build_driver(settings)
    assert isinstance(d, S3Driver)
    assert (d.bucket, d.part_size, d.key("/blobs/x")) == ("blobs", 16 * MiB, "registry/blobs/x")
    anyio.run(d.close)
    with pytest.raises(SettingsError, match="bucket"):
        load_settings(environ={"BERTH_STORAGE__DRIVER": "s3"})
    with pytest.raises(SettingsError):
        load_settings(environ={"BERTH_STORAGE__S3__PART_SIZE": str(MiB)})


@pytest.mark.anyio
async def test_registry_upload_flow_on_s3(
    make_driver: Callable[..., S3Driver], s3: Any, bucket: str
) -> None:
    # The way the registry drives storage: chunked appends resumed from JSON state, the digest
    # recomputed from storage (as after a restart), publish by move, then delete by GC.
    from registry.oci.digest import Digest
    from registry.storage.blobs import BlobContent
    from registry.storage.uploads import UploadData

    d = make_driver(prefix=f"{PREFIX}-flow-{uuid.uuid4().hex[:8]}", part_size=5 * MiB)
    upload_id = str(uuid.uuid4())
    data = b"".join(random_chunks(11, 11 * MiB + 7, high=2 * MiB))
    size, state = 0, None
    for start in range(0, len(data), 3 * MiB):
        piece = data[start : start + 3 * MiB]

        async def one(chunk: bytes = piece) -> Any:
            yield chunk

        # A fresh UploadData each time: no cached hasher, as if another replica took the PATCH.
        size, state = await UploadData(d).append(upload_id, size, resume_state(state), one())
    assert size == len(data)

    async def nothing() -> Any:
        if False:
            yield b""

    await UploadData(d).append(upload_id, size, resume_state(state), nothing(), final=True)
    digest = await UploadData(d).digest(upload_id, size, "sha256")
    assert digest == Digest("sha256", hashlib.sha256(data).hexdigest())
    blobs = BlobContent(d)
    await blobs.publish(upload_id, digest)
    assert await blobs.exists(digest)
    got = b"".join([chunk async for chunk in await blobs.open(digest, 5, 100)])
    assert got == data[5:105]
    await blobs.delete(digest)
    assert not await blobs.exists(digest)
    assert raw_keys(s3, bucket, d.prefix) == []
    assert multipart_uploads(s3, bucket, d.prefix) == []
