"""Faults under the replicas: the S3 server stopping mid-push, PostgreSQL restarting, and upload
sessions expiring with their multipart uploads.

Every test that stops a server uses the ``healthy`` fixture, which starts it again whatever
happens, so one failure cannot cascade through the session.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta

import httpx

from registry.app import build_services
from registry.db.models import utcnow
from registry.gc.uploads import expire_uploads
from registry.settings import load_settings
from tests.replicas.conftest import Cluster, bearer, token, wait_ready
from tests.support.images import sha256_digest
from tests.support.processes import RegistryProcess, describe

MiB = 1024 * 1024
# Two S3 attempts with backoff, then 503: a request may take this long at most.
RETRY_BUDGET = 15.0


def push_blob(client: httpx.Client, repo: str, data: bytes) -> str:
    digest = sha256_digest(data)
    response = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data,
        headers={"Content-Type": "application/octet-stream"},
    )  # fmt: skip
    assert response.status_code == 201, describe(response)
    return digest


def patch(client: httpx.Client, location: str, offset: int, chunk: bytes) -> httpx.Response:
    return client.patch(
        location,
        content=chunk,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
        },
    )


def assert_oci_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, describe(response)
    body = response.json()
    assert body["errors"][0]["code"] == code, describe(response)
    return body["errors"][0]


def clients(cluster: Cluster, repo: str, *replicas: RegistryProcess) -> tuple[httpx.Client, ...]:
    value = token(replicas[0], cluster.writer, f"repository:{repo}:pull,push")
    return tuple(httpx.Client(base_url=r.url, headers=bearer(value), timeout=60) for r in replicas)


def test_s3_stopped_mid_push_answers_503_and_the_retry_succeeds(
    cluster: Cluster, replica_a: RegistryProcess, replica_b: RegistryProcess, repo: str,
    healthy: None,
) -> None:  # fmt: skip
    a, b = clients(cluster, repo, replica_a, replica_b)
    with a, b:
        earlier = os.urandom(2 * MiB)
        earlier_digest = push_blob(a, repo, earlier)

        chunks = [os.urandom(3 * MiB), os.urandom(4 * MiB), os.urandom(MiB + 5)]
        blob = b"".join(chunks)
        digest = sha256_digest(blob)
        location = a.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
        assert patch(b, location, 0, chunks[0]).status_code == 202
        # Crosses the 5 MiB part size: a multipart upload with one part is now in S3.
        assert patch(a, location, len(chunks[0]), chunks[1]).status_code == 202
        offset = len(chunks[0]) + len(chunks[1])

        cluster.s3.stop()
        started = time.monotonic()
        failed = patch(b, location, offset, chunks[2])
        assert time.monotonic() - started < RETRY_BUDGET
        assert_oci_error(failed, 503, "UNAVAILABLE")
        started = time.monotonic()
        failed_put = a.put(
            location, params={"digest": digest}, content=chunks[2],
            headers={"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        assert time.monotonic() - started < RETRY_BUDGET
        assert_oci_error(failed_put, 503, "UNAVAILABLE")
        # Reads of stored blobs fail the same clear way, never with a 500 or a truncated body.
        assert_oci_error(a.get(f"/v2/{repo}/blobs/{earlier_digest}"), 503, "UNAVAILABLE")

        for replica in (replica_a, replica_b):
            ready = httpx.get(f"{replica.url}/health/ready", timeout=10)
            error = assert_oci_error(ready, 503, "UNAVAILABLE")
            assert set(error["detail"]) == {"storage"}, error
            assert httpx.get(f"{replica.url}/health/live", timeout=10).status_code == 200
        # The failed chunk was not recorded: the upload still stands where it did.
        status = b.get(location)
        assert status.status_code == 204 and status.headers["Range"] == f"0-{offset - 1}"

        cluster.s3.start()
        wait_ready(replica_a, 200)
        wait_ready(replica_b, 200)

        # The client retries the chunk it could not send, on any replica, then finishes.
        retried = patch(b, location, offset, chunks[2])
        assert retried.status_code == 202, describe(retried)
        done = a.put(location, params={"digest": digest})
        assert done.status_code == 201, describe(done)
        for client in (a, b):
            got = client.get(f"/v2/{repo}/blobs/{digest}")
            assert got.status_code == 200 and got.content == blob, describe(got)
            before = client.get(f"/v2/{repo}/blobs/{earlier_digest}")
            assert before.status_code == 200 and before.content == earlier


def test_s3_stopped_during_a_whole_push_then_pushed_again(
    cluster: Cluster, replica_a: RegistryProcess, replica_b: RegistryProcess, repo: str,
    healthy: None,
) -> None:  # fmt: skip
    """A monolithic push during the outage fails cleanly; nothing half-written is served."""
    a, b = clients(cluster, repo, replica_a, replica_b)
    with a, b:
        data = os.urandom(MiB)
        digest = sha256_digest(data)
        cluster.s3.stop()
        failed = a.post(
            f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data,
            headers={"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        assert_oci_error(failed, 503, "UNAVAILABLE")
        cluster.s3.start()
        wait_ready(replica_b, 200)
        assert b.head(f"/v2/{repo}/blobs/{digest}").status_code == 404
        assert push_blob(b, repo, data) == digest
        assert a.get(f"/v2/{repo}/blobs/{digest}").content == data


def test_postgres_restarted_between_requests(
    cluster: Cluster, replica_a: RegistryProcess, replica_b: RegistryProcess, repo: str,
    healthy: None,
) -> None:  # fmt: skip
    a, b = clients(cluster, repo, replica_a, replica_b)
    with a, b:
        data = os.urandom(100_000)
        digest = push_blob(a, repo, data)
        # Both replicas hold pooled connections that the restart breaks.
        assert b.head(f"/v2/{repo}/blobs/{digest}").status_code == 200

        cluster.postgres.restart()
        for client in (a, b, a, b):
            # pool_pre_ping replaces the dead connections: not even one request fails.
            response = client.head(f"/v2/{repo}/blobs/{digest}")
            assert response.status_code == 200, describe(response)

        # An outage: readiness says so, requests fail clearly, nothing hangs.
        cluster.postgres.stop()
        for replica in (replica_a, replica_b):
            ready = httpx.get(f"{replica.url}/health/ready", timeout=10)
            error = assert_oci_error(ready, 503, "UNAVAILABLE")
            assert set(error["detail"]) == {"database"}, error
            assert httpx.get(f"{replica.url}/health/live", timeout=10).status_code == 200
        assert_oci_error(a.get(f"/v2/{repo}/blobs/{digest}"), 503, "UNAVAILABLE")
        assert_oci_error(b.post(f"/v2/{repo}/blobs/uploads/"), 503, "UNAVAILABLE")

        cluster.postgres.start()
        wait_ready(replica_a, 200)
        wait_ready(replica_b, 200)
        # The registries recover by themselves: uploads and reads work again on both.
        again = os.urandom(50_000)
        again_digest = push_blob(b, repo, again)
        for client in (a, b):
            assert client.get(f"/v2/{repo}/blobs/{digest}").content == data
            assert client.get(f"/v2/{repo}/blobs/{again_digest}").content == again


def test_expired_upload_sessions_abort_their_multipart_uploads(
    cluster: Cluster, replica_a: RegistryProcess, replica_b: RegistryProcess, repo: str
) -> None:
    a, b = clients(cluster, repo, replica_a, replica_b)
    with a, b:
        location = a.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
        upload_id = location.rstrip("/").rsplit("/", 1)[1]
        # One 5 MiB part in a multipart upload, and a 1 MiB pending tail.
        assert patch(b, location, 0, os.urandom(6 * MiB)).status_code == 202

        s3 = cluster.s3.client()
        prefix = f"{cluster.env['BERTH_STORAGE__S3__PREFIX']}/uploads/{upload_id}/"

        def multipart() -> list[dict]:
            listing = s3.list_multipart_uploads(Bucket=cluster.s3.bucket, Prefix=prefix)
            return list(listing.get("Uploads", []))

        def objects() -> list[dict]:
            listing = s3.list_objects_v2(Bucket=cluster.s3.bucket, Prefix=prefix)
            return list(listing.get("Contents", []))

        assert multipart(), "the PATCH should have left a multipart upload in progress"
        assert objects(), "the PATCH should have left a pending tail"

        # The sweep every replica runs, here in-process against the same database and bucket,
        # two days later. It expires every session in the shared database; the tests of this
        # suite run one at a time, and none leaves an upload half done.
        settings = load_settings(
            environ={**cluster.env, "BERTH_AUTH__MODE": "none"},
            overrides={"data_dir": str(cluster.base_dir / "sweeper")},
        )

        async def sweep() -> int:
            svc = build_services(settings)
            try:
                return await expire_uploads(svc, now=utcnow() + timedelta(days=2))
            finally:
                await svc.driver.close()
                await svc.db.dispose()

        assert asyncio.run(sweep()) >= 1
        assert multipart() == []
        assert objects() == []
        assert_oci_error(b.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_oci_error(patch(a, location, 6 * MiB, b"more"), 404, "BLOB_UPLOAD_UNKNOWN")
