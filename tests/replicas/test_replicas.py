"""Two replicas sharing PostgreSQL, one S3 bucket and the signing keys act as one registry:
tokens, uploads, images and presigned redirects work across them."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from tests.replicas.conftest import TENANT, Cluster, bearer, token
from tests.support.images import ImageLayout, sha256_digest
from tests.support.processes import Account, ContainerdProcess, RegistryProcess, describe, run

MiB = 1024 * 1024


def test_both_replicas_live_and_ready(cluster: Cluster) -> None:
    for replica in cluster.replicas:
        live = httpx.get(f"{replica.url}/health/live", timeout=10)
        assert live.status_code == 200 and live.json() == {"status": "ok"}
        ready = httpx.get(f"{replica.url}/health/ready", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "storage": "ok"}


@pytest.mark.parametrize("direction", ["a->b", "b->a"])
def test_token_from_one_replica_is_accepted_by_the_other(
    cluster: Cluster, replica_a: RegistryProcess, replica_b: RegistryProcess, repo: str,
    direction: str,
) -> None:  # fmt: skip
    issuer, verifier = (replica_a, replica_b) if direction == "a->b" else (replica_b, replica_a)
    value = token(issuer, cluster.writer, f"repository:{repo}:pull,push")
    with httpx.Client(base_url=verifier.url, timeout=30) as client:
        assert client.get("/v2/").status_code == 401
        base = client.get("/v2/", headers=bearer(value))
        assert base.status_code == 200, describe(base)
        # Pushing a blob with it proves the scope was honoured, not just the signature.
        data = os.urandom(1000)
        digest = sha256_digest(data)
        pushed = client.post(
            f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data,
            headers=bearer(value),
        )  # fmt: skip
        assert pushed.status_code == 201, describe(pushed)
    # And the issuer, reading the shared database and bucket, sees that blob.
    got = httpx.get(f"{issuer.url}/v2/{repo}/blobs/{digest}", headers=bearer(value), timeout=30)
    assert got.status_code == 200 and got.content == data


def test_robot_made_by_the_cli_logs_in_on_every_replica(
    cluster: Cluster, replica_a: RegistryProcess, replica_b: RegistryProcess, repo: str
) -> None:
    # The robot's secret is hashed with the shared pepper: every replica verifies it alike.
    name = f"ci{os.urandom(3).hex()}"
    made = json.loads(
        cluster.cli("robot", "create", f"{TENANT}/{name}", "--access", "pull,push", "--json")
    )
    robot = Account(made["username"], made["secret"])
    for replica in (replica_a, replica_b):
        value = token(replica, robot, f"repository:{repo}:pull,push")
        claims = jwt.decode(value, options={"verify_signature": False})
        assert claims["access"][0]["actions"] == ["pull", "push"]
        wrong = httpx.get(
            f"{replica.url}/auth/token",
            params={"service": "berth", "scope": f"repository:{repo}:pull"},
            auth=(robot.username, robot.password + "x"),
            timeout=30,
        )
        assert wrong.status_code == 401, describe(wrong)


def test_chunked_upload_alternating_between_replicas(
    cluster: Cluster, replica_a: RegistryProcess, replica_b: RegistryProcess, repo: str
) -> None:
    # Chunks that straddle the 5 MiB part size, so the S3 multipart upload itself (parts and
    # pending tails) is continued by the other replica each time.
    chunks = [os.urandom(3 * MiB), os.urandom(4 * MiB), os.urandom(2 * MiB + 123)]
    last = os.urandom(1 * MiB + 7)
    blob = b"".join(chunks) + last
    digest = sha256_digest(blob)
    value = token(replica_a, cluster.writer, f"repository:{repo}:pull,push")
    a = httpx.Client(base_url=replica_a.url, headers=bearer(value), timeout=60)
    b = httpx.Client(base_url=replica_b.url, headers=bearer(value), timeout=60)
    with a, b:
        started = a.post(f"/v2/{repo}/blobs/uploads/")
        assert started.status_code == 202, describe(started)
        location = started.headers["Location"]
        offset = 0
        for client, chunk in zip([b, a, b], chunks, strict=True):
            response = client.patch(
                location,
                content=chunk,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                },
            )
            assert response.status_code == 202, describe(response)
            offset += len(chunk)
            assert response.headers["Range"] == f"0-{offset - 1}"
            location = response.headers["Location"]
        # The status is the same whichever replica is asked.
        for client in (a, b):
            status = client.get(location)
            assert status.status_code == 204 and status.headers["Range"] == f"0-{offset - 1}"
        done = a.put(
            location,
            params={"digest": digest},
            content=last,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert done.status_code == 201, describe(done)
        assert done.headers["Docker-Content-Digest"] == digest
        for client in (a, b):
            got = client.get(f"/v2/{repo}/blobs/{digest}")
            assert got.status_code == 200, describe(got)
            assert hashlib.sha256(got.content).hexdigest() == digest.split(":")[1]
            assert got.content == blob


def test_image_pushed_through_one_is_pulled_through_the_other(
    cluster: Cluster,
    replica_a: RegistryProcess,
    replica_b: RegistryProcess,
    skopeo: str,
    containerd: ContainerdProcess,
    single_layout: ImageLayout,
    repo: str,
    tmp_path: Path,
) -> None:
    creds = cluster.writer.creds
    auth = {"REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")}
    run(
        [skopeo, "copy", "--dest-tls-verify=false", "--dest-creds", creds,
         single_layout.skopeo_ref, f"docker://{replica_a.address}/{repo}:v1"],
        env=auth, timeout=180,
    )  # fmt: skip

    # skopeo, from B: the manifest bytes and every blob come back identical.
    out = tmp_path / "pulled"
    run(
        [skopeo, "copy", "--src-tls-verify=false", "--src-creds", creds,
         f"docker://{replica_b.address}/{repo}:v1", f"oci:{out}:v1"],
        env=auth, timeout=180,
    )  # fmt: skip
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == single_layout.digest
    for digest in single_layout.image.blob_digests:
        assert (out / "blobs" / "sha256" / digest.split(":")[1]).is_file()

    # containerd, from B.
    ref = f"{replica_b.address}/{repo}:v1"
    containerd.ctr("images", "pull", "--plain-http", "--user", creds, ref, timeout=180)
    listed = containerd.ctr("images", "ls").stdout.splitlines()[1:]
    targets = {line.split()[0]: line.split()[2] for line in listed if line.strip()}
    assert targets[ref] == single_layout.digest
    containerd.ctr("images", "rm", "--sync", ref)


@pytest.fixture(scope="module")
def redirecting(cluster: Cluster) -> Iterator[RegistryProcess]:
    """A third replica that answers blob GETs with presigned URLs for another host name."""
    replica = cluster.start_replica(
        "c",
        BERTH_STORAGE__S3__REDIRECT="true",
        BERTH_STORAGE__S3__PUBLIC_ENDPOINT_URL=f"http://localhost:{cluster.s3.port}",
    )
    yield replica
    replica.stop()
    cluster.replicas.remove(replica)


def test_blob_get_redirects_to_presigned_public_url(
    cluster: Cluster, replica_a: RegistryProcess, redirecting: RegistryProcess, repo: str
) -> None:
    value = token(replica_a, cluster.writer, f"repository:{repo}:pull,push")
    data = os.urandom(300_000)
    digest = sha256_digest(data)
    pushed = httpx.post(
        f"{replica_a.url}/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data,
        headers=bearer(value), timeout=30,
    )  # fmt: skip
    assert pushed.status_code == 201, describe(pushed)

    url = f"{redirecting.url}/v2/{repo}/blobs/{digest}"
    got = httpx.get(url, headers=bearer(value), timeout=30)
    assert got.status_code == 307, describe(got)
    assert got.headers["Docker-Content-Digest"] == digest
    location = httpx.URL(got.headers["Location"])
    assert (location.host, location.port) == ("localhost", cluster.s3.port)
    assert "X-Amz-Signature" in str(location)
    # The presigned URL serves the blob to anyone holding it, with no registry token.
    direct = httpx.get(location, timeout=30)
    assert direct.status_code == 200, describe(direct)
    assert direct.content == data
    # A replica without redirects streams the same bytes itself.
    streamed = httpx.get(f"{replica_a.url}/v2/{repo}/blobs/{digest}", headers=bearer(value))
    assert streamed.status_code == 200 and streamed.content == data


def test_blob_get_follows_redirect_like_a_client(
    cluster: Cluster, skopeo: str, replica_a: RegistryProcess, redirecting: RegistryProcess,
    single_layout: ImageLayout, repo: str, tmp_path: Path,
) -> None:  # fmt: skip
    creds = cluster.writer.creds
    auth = {"REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")}
    run(
        [skopeo, "copy", "--dest-tls-verify=false", "--dest-creds", creds,
         single_layout.skopeo_ref, f"docker://{replica_a.address}/{repo}:v1"],
        env=auth, timeout=180,
    )  # fmt: skip
    out = tmp_path / "via-redirect"
    run(
        [skopeo, "copy", "--src-tls-verify=false", "--src-creds", creds,
         f"docker://{redirecting.address}/{repo}:v1", f"dir:{out}"],
        env=auth, timeout=180,
    )  # fmt: skip
    assert sha256_digest((out / "manifest.json").read_bytes()) == single_layout.digest
    for digest in single_layout.image.blob_digests:
        assert sha256_digest((out / digest.split(":")[1]).read_bytes()) == digest
