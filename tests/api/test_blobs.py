"""Blob HEAD, GET (with Range) and DELETE, and the repository links every read goes through."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.api.conftest import (
    Image,
    assert_error,
    assert_intact,
    deterministic_bytes,
    digest_of,
    expect,
    push_blob,
)

DATA = deterministic_bytes("blobs", 1000)
DIGEST = digest_of(DATA)
SIZE = len(DATA)


@pytest.fixture
def blob_repo(client: httpx.Client, repo: str) -> str:
    push_blob(client, repo, DATA)
    return repo


def test_head_blob(client: httpx.Client, blob_repo: str) -> None:
    resp = expect(client.head(f"/v2/{blob_repo}/blobs/{DIGEST}"), 200)
    assert resp.content == b""
    assert resp.headers["Content-Length"] == str(SIZE)
    assert resp.headers["Docker-Content-Digest"] == DIGEST
    assert resp.headers["ETag"] == f'"{DIGEST}"'


def test_get_blob(client: httpx.Client, blob_repo: str) -> None:
    resp = expect(client.get(f"/v2/{blob_repo}/blobs/{DIGEST}"), 200)
    assert resp.content == DATA
    assert resp.headers["Content-Length"] == str(SIZE)
    assert resp.headers["Docker-Content-Digest"] == DIGEST
    assert resp.headers["ETag"] == f'"{DIGEST}"'


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=100-199", 100, 199),
        ("bytes=-10", SIZE - 10, SIZE - 1),
        ("bytes=5-", 5, SIZE - 1),
        (f"bytes={SIZE - 1}-", SIZE - 1, SIZE - 1),
        (f"bytes=990-{SIZE + 500}", 990, SIZE - 1),
        (f"bytes=-{SIZE * 2}", 0, SIZE - 1),
    ],
    ids=["first-10", "middle", "suffix", "open", "last-byte", "end-past-size", "suffix-too-long"],
)
def test_range_get(client: httpx.Client, blob_repo: str, header: str, start: int, end: int) -> None:
    resp = expect(client.get(f"/v2/{blob_repo}/blobs/{DIGEST}", headers={"Range": header}), 206)
    assert resp.content == DATA[start : end + 1]
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{SIZE}"
    assert resp.headers["Content-Length"] == str(end - start + 1)
    assert resp.headers["Docker-Content-Digest"] == DIGEST


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}", "bytes=-0"])
def test_range_past_the_end_is_416(
    client: httpx.Client, blob_repo: str, known_good: Image, header: str
) -> None:
    resp = client.get(f"/v2/{blob_repo}/blobs/{DIGEST}", headers={"Range": header})
    assert_error(resp, 416)
    assert resp.headers["Content-Range"] == f"bytes */{SIZE}"
    assert_intact(client, known_good)


def test_unknown_blob_is_404(client: httpx.Client, blob_repo: str, known_good: Image) -> None:
    unknown = digest_of(b"never pushed")
    assert_error(client.get(f"/v2/{blob_repo}/blobs/{unknown}"), 404, "BLOB_UNKNOWN")
    assert_error(client.head(f"/v2/{blob_repo}/blobs/{unknown}"), 404)
    assert_error(client.delete(f"/v2/{blob_repo}/blobs/{unknown}"), 404, "BLOB_UNKNOWN")
    # Unknown repository, too.
    assert_error(client.get(f"/v2/no/such/repo/blobs/{DIGEST}"), 404, "BLOB_UNKNOWN")
    assert_intact(client, known_good)


def test_blob_of_another_repository_is_not_readable_here(
    client: httpx.Client, new_repo: Callable[..., str]
) -> None:
    owner = new_repo()
    data = deterministic_bytes("private", 700)
    digest = push_blob(client, owner, data)
    # Neither from a repository of the same tenant nor from another tenant.
    tenant = owner.split("/")[0]
    for other in (new_repo(tenant, "sibling"), new_repo()):
        push_blob(client, other, b"something to make the repository exist " + other.encode())
        assert_error(client.get(f"/v2/{other}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
        assert_error(client.head(f"/v2/{other}/blobs/{digest}"), 404)
        assert_error(client.get(f"/v2/{other}/blobs/{digest}", headers={"Range": "bytes=0-9"}), 404)
    assert expect(client.get(f"/v2/{owner}/blobs/{digest}"), 200).content == data


def test_delete_blob(client: httpx.Client, new_repo: Callable[..., str], known_good: Image) -> None:
    data = deterministic_bytes("deleted", 800)
    first, second = new_repo(), new_repo()
    digest = push_blob(client, first, data)
    push_blob(client, second, data)
    expect(client.delete(f"/v2/{first}/blobs/{digest}"), 202)
    assert_error(client.get(f"/v2/{first}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(client.head(f"/v2/{first}/blobs/{digest}"), 404)
    assert_error(client.delete(f"/v2/{first}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    # Another repository linking the same content still reads it.
    assert expect(client.get(f"/v2/{second}/blobs/{digest}"), 200).content == data
    # And it can be pushed again.
    push_blob(client, first, data)
    assert expect(client.get(f"/v2/{first}/blobs/{digest}"), 200).content == data
    assert_intact(client, known_good)


def test_blob_shared_by_an_image_survives_deleting_it_elsewhere(
    client: httpx.Client, repo: str, known_good: Image
) -> None:
    # The known-good image's first blob, pushed here and deleted here.
    digest, data = next(iter(known_good.blobs.items()))
    push_blob(client, repo, data)
    expect(client.delete(f"/v2/{repo}/blobs/{digest}"), 202)
    assert_intact(client, known_good)


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=abc", "items=0-5", "bytes=-"])
def test_unsupported_range_forms_are_ignored(
    client: httpx.Client, blob_repo: str, header: str
) -> None:
    # RFC 9110 lets a server ignore a Range it does not support and answer the whole blob.
    resp = expect(client.get(f"/v2/{blob_repo}/blobs/{DIGEST}", headers={"Range": header}), 200)
    assert resp.content == DATA
    assert "Content-Range" not in resp.headers
