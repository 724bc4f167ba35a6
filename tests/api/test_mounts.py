"""Cross-repository mounts: explicit (?mount=&from=) and automatic (same tenant only)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.api.conftest import (
    Image,
    assert_error,
    assert_intact,
    deterministic_bytes,
    digest_of,
    expect,
    push_blob,
)


def mount(client: httpx.Client, repo: str, digest: str, source: str | None) -> httpx.Response:
    params = {"mount": digest} if source is None else {"mount": digest, "from": source}
    return client.post(f"/v2/{repo}/blobs/uploads/", params=params)


def assert_mounted(client: httpx.Client, resp: httpx.Response, repo: str, data: bytes) -> None:
    digest = digest_of(data)
    expect(resp, 201)
    assert resp.headers["Location"].endswith(f"/v2/{repo}/blobs/{digest}")
    assert resp.headers["Docker-Content-Digest"] == digest
    assert expect(client.get(f"/v2/{repo}/blobs/{digest}"), 200).content == data


def assert_upload_offered(
    client: httpx.Client, resp: httpx.Response, repo: str, data: bytes
) -> None:
    """202: the registry did not mount and opened an ordinary upload session instead."""
    digest = digest_of(data)
    expect(resp, 202)
    location = resp.headers["Location"]
    assert f"/v2/{repo}/blobs/uploads/" in location
    assert_error(client.head(f"/v2/{repo}/blobs/{digest}"), 404)
    expect(client.put(location, params={"digest": digest}, content=data), 201)
    assert expect(client.get(f"/v2/{repo}/blobs/{digest}"), 200).content == data


def test_mount_from_a_repository_holding_the_blob(
    client: httpx.Client, new_repo: Callable[..., str]
) -> None:
    data = deterministic_bytes("mount", 900)
    source, target = new_repo(), new_repo()
    digest = push_blob(client, source, data)
    assert_mounted(client, mount(client, target, digest, source), target, data)
    # Mounting again is harmless.
    assert_mounted(client, mount(client, target, digest, source), target, data)


def test_mount_from_a_repository_without_the_blob_starts_an_upload(
    client: httpx.Client, new_repo: Callable[..., str]
) -> None:
    data = deterministic_bytes("not-there", 900)
    holder, source, target = new_repo(), new_repo(), new_repo()
    push_blob(client, holder, data)
    push_blob(client, source, b"other content")
    assert_upload_offered(client, mount(client, target, digest_of(data), source), target, data)


def test_mount_from_an_unknown_or_invalid_repository_starts_an_upload(
    client: httpx.Client, new_repo: Callable[..., str], known_good: Image
) -> None:
    data = deterministic_bytes("unknown-source", 300)
    target = new_repo()
    digest = digest_of(data)
    expect(mount(client, target, digest, "does/not/exist"), 202)
    expect(mount(client, target, digest, "Invalid//Name"), 202)
    assert_error(client.head(f"/v2/{target}/blobs/{digest}"), 404)
    assert_intact(client, known_good)


def test_mount_with_a_malformed_digest(client: httpx.Client, repo: str, known_good: Image) -> None:
    resp = mount(client, repo, "sha256:xyz", known_good.repo)
    assert_error(resp, 400, "DIGEST_INVALID")
    assert_intact(client, known_good)


def test_automatic_mount_within_the_tenant(
    client: httpx.Client, new_repo: Callable[..., str]
) -> None:
    data = deterministic_bytes("auto-mount", 900)
    source = new_repo(name="team/source")
    target = new_repo(source.split("/")[0], "target")
    digest = push_blob(client, source, data)
    assert_mounted(client, mount(client, target, digest, None), target, data)


def test_no_automatic_mount_across_tenants(
    client: httpx.Client, new_repo: Callable[..., str]
) -> None:
    data = deterministic_bytes("cross-tenant", 900)
    source, target = new_repo(), new_repo()
    assert source.split("/")[0] != target.split("/")[0]
    digest = push_blob(client, source, data)
    assert_upload_offered(client, mount(client, target, digest, None), target, data)


def test_tenant_prefix_is_a_whole_path_component(
    client: httpx.Client, new_repo: Callable[..., str]
) -> None:
    # "acme" and "acme-evil" are different tenants, although one name prefixes the other.
    data = deterministic_bytes("prefix-tenant", 900)
    source = new_repo()
    tenant = source.split("/")[0]
    target = f"{tenant}-evil/app"
    digest = push_blob(client, source, data)
    assert_upload_offered(client, mount(client, target, digest, None), target, data)


def test_no_mount_from_a_repository_that_deleted_the_blob(
    client: httpx.Client, new_repo: Callable[..., str]
) -> None:
    data = deterministic_bytes("mount-after-delete", 600)
    source, target = new_repo(), new_repo()
    digest = push_blob(client, source, data)
    expect(client.delete(f"/v2/{source}/blobs/{digest}"), 202)
    assert_upload_offered(client, mount(client, target, digest, source), target, data)
