"""Blob uploads: monolithic, chunked, streamed, cancelled, refused; what each answers."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.api.conftest import (
    Image,
    assert_error,
    assert_intact,
    describe,
    deterministic_bytes,
    digest_of,
    expect,
    push_blob,
    start_upload,
)

DATA = deterministic_bytes("upload", 10_000)
DIGEST = digest_of(DATA)


def stream(data: bytes, piece: int = 1000) -> Iterator[bytes]:
    """A generator body: httpx sends it with Transfer-Encoding: chunked."""
    for i in range(0, len(data), piece):
        yield data[i : i + piece]


def assert_blob(client: httpx.Client, repo: str, data: bytes, algorithm: str = "sha256") -> None:
    digest = digest_of(data, algorithm)
    resp = expect(client.get(f"/v2/{repo}/blobs/{digest}"), 200)
    assert resp.content == data
    assert resp.headers["Docker-Content-Digest"] == digest


def assert_progress(resp: httpx.Response, location: str, received: int) -> None:
    """The Location/Range/Docker-Upload-UUID trio of a 202 (PATCH) or 204 (GET status)."""
    assert resp.headers["Location"] == location, resp.headers
    assert resp.headers["Range"] == f"0-{max(received - 1, 0)}", resp.headers
    assert resp.headers["Docker-Upload-UUID"] == location.rstrip("/").rsplit("/", 1)[1]


def test_post_then_monolithic_put(client: httpx.Client, repo: str) -> None:
    resp = expect(client.post(f"/v2/{repo}/blobs/uploads/"), 202)
    location = resp.headers["Location"]
    # Relative or absolute: either way it names an upload of this repository.
    assert f"/v2/{repo}/blobs/uploads/" in location, location
    assert_progress(resp, location, 0)
    done = client.put(
        location,
        params={"digest": DIGEST},
        content=DATA,
        headers={"Content-Type": "application/octet-stream"},
    )
    expect(done, 201)
    assert done.headers["Location"].endswith(f"/v2/{repo}/blobs/{DIGEST}")
    assert done.headers["Docker-Content-Digest"] == DIGEST
    assert_blob(client, repo, DATA)


def test_post_with_digest_is_monolithic(client: httpx.Client, repo: str) -> None:
    resp = client.post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": DIGEST},
        content=DATA,
        headers={"Content-Type": "application/octet-stream"},
    )
    expect(resp, 201)
    assert resp.headers["Location"].endswith(f"/v2/{repo}/blobs/{DIGEST}")
    assert resp.headers["Docker-Content-Digest"] == DIGEST
    assert_blob(client, repo, DATA)


def test_post_with_wrong_digest_stores_nothing(
    client: httpx.Client, repo: str, known_good: Image
) -> None:
    wrong = digest_of(b"something else")
    resp = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": wrong}, content=DATA)
    assert_error(resp, 400, "DIGEST_INVALID")
    assert_error(client.head(f"/v2/{repo}/blobs/{wrong}"), 404)
    assert_error(client.head(f"/v2/{repo}/blobs/{DIGEST}"), 404)
    assert_intact(client, known_good)


def test_chunked_patch_with_content_range_and_length(client: httpx.Client, repo: str) -> None:
    location = start_upload(client, repo)
    offset = 0
    for size in (4000, 4000, 2000):
        chunk = DATA[offset : offset + size]
        resp = client.patch(
            location,
            content=chunk,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + size - 1}",
                "Content-Length": str(size),
            },
        )
        expect(resp, 202)
        offset += size
        location = resp.headers["Location"]
        assert_progress(resp, location, offset)
    expect(client.put(location, params={"digest": DIGEST}), 201)
    assert_blob(client, repo, DATA)


def test_chunked_patch_without_content_range(client: httpx.Client, repo: str) -> None:
    location = start_upload(client, repo)
    for offset in range(0, len(DATA), 3000):
        resp = expect(client.patch(location, content=DATA[offset : offset + 3000]), 202)
        location = resp.headers["Location"]
        assert_progress(resp, location, min(offset + 3000, len(DATA)))
    expect(client.put(location, params={"digest": DIGEST}), 201)
    assert_blob(client, repo, DATA)


def test_chunked_patch_with_transfer_encoding_chunked(client: httpx.Client, repo: str) -> None:
    location = start_upload(client, repo)
    resp = client.patch(location, content=stream(DATA[:6000]))
    assert resp.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in resp.request.headers
    expect(resp, 202)
    assert_progress(resp, resp.headers["Location"], 6000)
    # Content-Range but no Content-Length: the body is still streamed.
    resp = client.patch(
        resp.headers["Location"],
        content=stream(DATA[6000:]),
        headers={"Content-Range": f"6000-{len(DATA) - 1}"},
    )
    expect(resp, 202)
    assert_progress(resp, resp.headers["Location"], len(DATA))
    expect(client.put(resp.headers["Location"], params={"digest": DIGEST}), 201)
    assert_blob(client, repo, DATA)


def test_put_carries_the_final_chunk(client: httpx.Client, repo: str) -> None:
    location = start_upload(client, repo)
    resp = expect(client.patch(location, content=DATA[:7000]), 202)
    done = client.put(
        resp.headers["Location"],
        params={"digest": DIGEST},
        content=DATA[7000:],
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"7000-{len(DATA) - 1}",
        },
    )
    expect(done, 201)
    assert_blob(client, repo, DATA)


def test_put_carries_a_streamed_final_chunk(client: httpx.Client, repo: str) -> None:
    location = start_upload(client, repo)
    resp = expect(client.patch(location, content=DATA[:100]), 202)
    done = client.put(
        resp.headers["Location"], params={"digest": DIGEST}, content=stream(DATA[100:])
    )
    expect(done, 201)
    assert_blob(client, repo, DATA)


def test_empty_blob(client: httpx.Client, repo: str) -> None:
    push_blob(client, repo, b"", monolithic=False)
    push_blob(client, repo, b"", monolithic=True)
    resp = expect(client.head(f"/v2/{repo}/blobs/{digest_of(b'')}"), 200)
    assert resp.headers["Content-Length"] == "0"
    assert_blob(client, repo, b"")


def test_upload_status(client: httpx.Client, repo: str) -> None:
    location = start_upload(client, repo)
    resp = expect(client.get(location), 204)
    assert_progress(resp, location, 0)
    assert resp.content == b""
    expect(client.patch(location, content=DATA[:1234]), 202)
    resp = expect(client.get(location), 204)
    assert_progress(resp, location, 1234)


def test_delete_cancels_the_upload(client: httpx.Client, repo: str, known_good: Image) -> None:
    location = start_upload(client, repo)
    expect(client.patch(location, content=DATA[:500]), 202)
    expect(client.delete(location), 204)
    for resp in (
        client.get(location),
        client.patch(location, content=DATA[500:600]),
        client.put(location, params={"digest": DIGEST}, content=DATA[500:]),
        client.delete(location),
    ):
        assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.head(f"/v2/{repo}/blobs/{DIGEST}"), 404)
    assert_intact(client, known_good)


@pytest.mark.parametrize("first", [(0, 999), (0, 499)], ids=["repeated", "overlapping"])
def test_repeated_chunk_is_416(
    client: httpx.Client, repo: str, known_good: Image, first: tuple[int, int]
) -> None:
    location = start_upload(client, repo)
    expect(client.patch(location, content=DATA[:1000], headers={"Content-Range": "0-999"}), 202)
    start, end = first
    resp = client.patch(
        location, content=DATA[start : end + 1], headers={"Content-Range": f"{start}-{end}"}
    )
    assert_error(resp, 416)
    # The upload is where it was, and goes on from there.
    assert_progress(expect(client.get(location), 204), location, 1000)
    expect(client.patch(location, content=DATA[1000:], headers={"Content-Range": "1000-9999"}), 202)
    expect(client.put(location, params={"digest": DIGEST}), 201)
    assert_blob(client, repo, DATA)
    assert_intact(client, known_good)


@pytest.mark.parametrize(
    "content_range", ["2000-2999", "500-1499", "999-1998"], ids=["gap", "behind", "off-by-one"]
)
def test_out_of_order_chunk_is_416(
    client: httpx.Client, repo: str, known_good: Image, content_range: str
) -> None:
    location = start_upload(client, repo)
    expect(client.patch(location, content=DATA[:1000], headers={"Content-Range": "0-999"}), 202)
    resp = client.patch(location, content=DATA[:1000], headers={"Content-Range": content_range})
    assert_error(resp, 416)
    assert_progress(expect(client.get(location), 204), location, 1000)
    expect(client.put(location, params={"digest": DIGEST}, content=DATA[1000:]), 201)
    assert_blob(client, repo, DATA)
    assert_intact(client, known_good)


def test_first_chunk_not_at_zero_is_416(client: httpx.Client, repo: str, known_good: Image) -> None:
    location = start_upload(client, repo)
    resp = client.patch(location, content=DATA[10:20], headers={"Content-Range": "10-19"})
    assert_error(resp, 416)
    assert_progress(expect(client.get(location), 204), location, 0)
    assert_intact(client, known_good)


def test_out_of_order_final_chunk_on_put_is_416(
    client: httpx.Client, repo: str, known_good: Image
) -> None:
    location = start_upload(client, repo)
    expect(client.patch(location, content=DATA[:1000]), 202)
    resp = client.put(
        location,
        params={"digest": DIGEST},
        content=DATA[2000:],
        headers={"Content-Range": "2000-9999"},
    )
    assert_error(resp, 416)
    assert_error(client.head(f"/v2/{repo}/blobs/{DIGEST}"), 404)
    assert_intact(client, known_good)


def test_digest_mismatch_on_put(client: httpx.Client, repo: str, known_good: Image) -> None:
    location = start_upload(client, repo)
    expect(client.patch(location, content=DATA[:5000]), 202)
    claimed = digest_of(b"not the uploaded content")
    resp = client.put(location, params={"digest": claimed}, content=DATA[5000:])
    assert_error(resp, 400, "DIGEST_INVALID")
    assert_error(client.get(f"/v2/{repo}/blobs/{claimed}"), 404, "BLOB_UNKNOWN")
    assert_error(client.get(f"/v2/{repo}/blobs/{DIGEST}"), 404, "BLOB_UNKNOWN")
    assert_error(client.head(f"/v2/{repo}/blobs/{DIGEST}"), 404)
    assert_intact(client, known_good)


def test_put_without_digest_parameter(client: httpx.Client, repo: str, known_good: Image) -> None:
    location = start_upload(client, repo)
    expect(client.patch(location, content=DATA), 202)
    assert_error(client.put(location), 400, "DIGEST_INVALID")
    assert_error(client.put(location, params={"digest": ""}), 400, "DIGEST_INVALID")
    # Still open: the client may retry with the digest.
    assert_progress(expect(client.get(location), 204), location, len(DATA))
    expect(client.put(location, params={"digest": DIGEST}), 201)
    assert_blob(client, repo, DATA)
    assert_intact(client, known_good)


@pytest.mark.parametrize(
    "digest",
    [
        "md5:" + hashlib.md5(DATA).hexdigest(),
        "sha1:" + hashlib.sha1(DATA).hexdigest(),
        "sha256:" + hashlib.sha256(DATA).hexdigest().upper(),
        "sha256:" + hashlib.sha256(DATA).hexdigest()[:-1],
        "sha256",
        "sha256:",
        ":" + hashlib.sha256(DATA).hexdigest(),
    ],
    ids=["md5", "sha1", "uppercase", "short", "no-colon", "empty-hex", "no-algorithm"],
)
def test_unsupported_or_malformed_digest_on_upload(
    client: httpx.Client, repo: str, known_good: Image, digest: str
) -> None:
    resp = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=DATA)
    assert_error(resp, 400, "DIGEST_INVALID")
    location = start_upload(client, repo)
    resp = client.put(location, params={"digest": digest}, content=DATA)
    assert_error(resp, 400, "DIGEST_INVALID")
    assert_error(client.head(f"/v2/{repo}/blobs/{DIGEST}"), 404)
    assert_intact(client, known_good)


def test_sha512_uploads(client: httpx.Client, repo: str) -> None:
    digest = push_blob(client, repo, DATA, algorithm="sha512", monolithic=False)
    assert digest.startswith("sha512:")
    assert_blob(client, repo, DATA, "sha512")
    other = deterministic_bytes("sha512-monolithic", 3000)
    resp = client.post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": digest_of(other, "sha512")},
        content=other,
    )
    expect(resp, 201)
    assert resp.headers["Docker-Content-Digest"] == digest_of(other, "sha512")
    assert_blob(client, repo, other, "sha512")
    # Chunked, then closed with a sha512 digest.
    third = deterministic_bytes("sha512-chunked", 5000)
    location = start_upload(client, repo)
    expect(client.patch(location, content=third[:2500]), 202)
    expect(client.patch(location, content=third[2500:]), 202)
    expect(client.put(location, params={"digest": digest_of(third, "sha512")}), 201)
    assert_blob(client, repo, third, "sha512")


@pytest.mark.parametrize(
    "upload_id",
    [str(uuid.uuid4()), "not-a-uuid", "0" * 200, "%2e%2e", str(uuid.uuid4()).upper()],
    ids=["unknown", "malformed", "long", "encoded-dotdot", "uppercase"],
)
def test_unknown_upload_is_404(
    client: httpx.Client, repo: str, known_good: Image, upload_id: str
) -> None:
    start_upload(client, repo)  # the repository exists
    location = f"/v2/{repo}/blobs/uploads/{upload_id}"
    for resp in (
        client.get(location),
        client.patch(location, content=b"abc"),
        client.put(location, params={"digest": DIGEST}, content=DATA),
        client.delete(location),
    ):
        assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN")
    assert_intact(client, known_good)


def test_upload_of_another_repository_is_unknown_here(
    client: httpx.Client, new_repo, known_good: Image
) -> None:
    tenant = "sharedtenant"
    source, other = new_repo(tenant, "one"), new_repo(tenant, "two")
    location = start_upload(client, source)
    upload_id = location.rstrip("/").rsplit("/", 1)[1]
    start_upload(client, other)
    foreign = f"/v2/{other}/blobs/uploads/{upload_id}"
    assert_error(client.get(foreign), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.patch(foreign, content=DATA), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(
        client.put(foreign, params={"digest": DIGEST}, content=DATA), 404, "BLOB_UPLOAD_UNKNOWN"
    )
    # The real session is untouched.
    assert_progress(expect(client.get(location), 204), location, 0)
    assert_intact(client, known_good)


def test_completed_upload_cannot_be_reused(client: httpx.Client, repo: str) -> None:
    location = start_upload(client, repo)
    expect(client.put(location, params={"digest": DIGEST}, content=DATA), 201)
    assert_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.patch(location, content=b"more"), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_blob(client, repo, DATA)


def test_large_streamed_upload_round_trips(client: httpx.Client, repo: str) -> None:
    """64 MiB sent as a generator and read back as a stream: never whole in memory."""
    mib, count = 1024 * 1024, 64
    block = deterministic_bytes("large", mib)
    sent = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for i in range(count):
            chunk = i.to_bytes(4, "big") + block[4:]
            sent.update(chunk)
            yield chunk

    location = start_upload(client, repo)
    resp = expect(client.patch(location, content=body(), timeout=120), 202)
    assert_progress(resp, resp.headers["Location"], count * mib)
    digest = f"sha256:{sent.hexdigest()}"
    expect(client.put(resp.headers["Location"], params={"digest": digest}), 201)

    head = expect(client.head(f"/v2/{repo}/blobs/{digest}"), 200)
    assert head.headers["Content-Length"] == str(count * mib)
    received, length = hashlib.sha256(), 0
    with client.stream("GET", f"/v2/{repo}/blobs/{digest}", timeout=120) as resp:
        expect(resp, 200)
        for chunk in resp.iter_bytes():
            received.update(chunk)
            length += len(chunk)
    assert length == count * mib
    assert f"sha256:{received.hexdigest()}" == digest


@pytest.mark.parametrize(
    "streamed",
    [
        False,
        True,
    ],
    ids=["content-length", "chunked"],
)
def test_chunk_shorter_than_its_content_range_is_refused(
    client: httpx.Client, repo: str, known_good: Image, streamed: bool
) -> None:
    location = start_upload(client, repo)
    expect(client.patch(location, content=DATA[:100], headers={"Content-Range": "0-99"}), 202)
    chunk = DATA[100:150]
    resp = client.patch(
        location,
        content=stream(chunk, 10) if streamed else chunk,
        headers={"Content-Range": "100-199"},
    )
    assert resp.status_code in (400, 416), describe(resp)
    assert_error(resp, resp.status_code)
    assert_progress(expect(client.get(location), 204), location, 100)
    assert_intact(client, known_good)


@pytest.mark.parametrize("header", ["garbage", "0-", "-5", "5-1", "bytes=a-b"])
def test_malformed_content_range_is_416(
    client: httpx.Client, repo: str, known_good: Image, header: str
) -> None:
    location = start_upload(client, repo)
    resp = client.patch(location, content=DATA[:10], headers={"Content-Range": header})
    assert_error(resp, 416)
    assert_progress(expect(client.get(location), 204), location, 0)
    assert_intact(client, known_good)


def test_post_with_digest_and_streamed_body(client: httpx.Client, repo: str) -> None:
    resp = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": DIGEST}, content=stream(DATA)
    )
    expect(resp, 201)
    assert_blob(client, repo, DATA)
