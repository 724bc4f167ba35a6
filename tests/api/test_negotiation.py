"""Accept negotiation on manifest GET/HEAD, as Docker, containerd and OCI clients send it."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Image,
    assert_error,
    assert_intact,
    expect,
    make_image,
    make_index,
    push_image,
)


@pytest.fixture(scope="module")
def oci_image(client: httpx.Client, new_repo) -> Image:
    image = make_image(new_repo(), "oci", seed="negotiation-oci")
    push_image(client, image)
    return image


@pytest.fixture(scope="module")
def docker_list(client: httpx.Client, new_repo) -> Image:
    repo = new_repo()
    children = [
        make_image(repo, None, seed=f"negotiation-{arch}", media_type=DOCKER_MANIFEST)
        for arch in ("arm64", "amd64", "ppc64le")
    ]
    index = make_index(
        repo,
        "list",
        children,
        media_type=DOCKER_LIST,
        platforms=[("linux", "arm64"), ("linux", "amd64"), ("linux", "ppc64le")],
    )
    push_image(client, index)
    return index


def fetch(
    client: httpx.Client, image: Image, headers: list[tuple[str, str]], reference: str | None = None
) -> httpx.Response:
    return client.get(f"/v2/{image.repo}/manifests/{reference or image.reference}", headers=headers)


def test_several_accept_header_lines(client: httpx.Client, oci_image: Image) -> None:
    headers = [
        ("Accept", DOCKER_MANIFEST),
        ("Accept", DOCKER_LIST),
        ("Accept", OCI_MANIFEST),
        ("Accept", OCI_INDEX),
    ]
    resp = expect(fetch(client, oci_image, headers), 200)
    assert resp.request.headers.get_list("Accept") == [t for _, t in headers]
    assert resp.content == oci_image.manifest
    assert resp.headers["Content-Type"] == OCI_MANIFEST


def test_comma_separated_accept(client: httpx.Client, oci_image: Image) -> None:
    headers = [("Accept", f"{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.9,{OCI_INDEX}")]
    resp = expect(fetch(client, oci_image, headers), 200)
    assert resp.content == oci_image.manifest


def test_mixed_lines_and_lists(client: httpx.Client, oci_image: Image) -> None:
    headers = [("Accept", f"{DOCKER_MANIFEST}, {DOCKER_LIST}"), ("Accept", OCI_MANIFEST)]
    assert expect(fetch(client, oci_image, headers), 200).content == oci_image.manifest


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_docker_only_client_asking_for_oci_manifest(
    client: httpx.Client, oci_image: Image, known_good: Image, method: str
) -> None:
    headers = [("Accept", DOCKER_MANIFEST), ("Accept", DOCKER_LIST)]
    for reference in (oci_image.tag, oci_image.digest):
        resp = client.request(
            method, f"/v2/{oci_image.repo}/manifests/{reference}", headers=headers
        )
        error = assert_error(resp, 404, "MANIFEST_UNKNOWN")
        if method == "GET":
            # Clear enough to tell "exists, but not in a type you accept" from "absent".
            assert OCI_MANIFEST in error["message"], error
            assert "Accept" in error["message"], error
    assert_intact(client, known_good)


def test_no_accept_header_is_served(client: httpx.Client, oci_image: Image) -> None:
    request = client.build_request("GET", f"/v2/{oci_image.repo}/manifests/oci")
    del request.headers["Accept"]
    resp = expect(client.send(request), 200)
    assert "accept" not in resp.request.headers
    assert resp.content == oci_image.manifest
    assert resp.headers["Content-Type"] == OCI_MANIFEST


@pytest.mark.parametrize("accept", ["*/*", "application/*", "text/html, */*;q=0.1"])
def test_wildcards_are_served(client: httpx.Client, oci_image: Image, accept: str) -> None:
    resp = expect(fetch(client, oci_image, [("Accept", accept)]), 200)
    assert resp.content == oci_image.manifest


def test_docker_list_to_a_schema2_only_client_serves_linux_amd64(
    client: httpx.Client, docker_list: Image
) -> None:
    amd64 = docker_list.children[1]
    for method in ("GET", "HEAD"):
        resp = client.request(
            method,
            f"/v2/{docker_list.repo}/manifests/list",
            headers=[("Accept", DOCKER_MANIFEST)],
        )
        expect(resp, 200)
        assert resp.headers["Docker-Content-Digest"] == amd64.digest
        assert resp.headers["Content-Type"] == DOCKER_MANIFEST
        if method == "GET":
            assert resp.content == amd64.manifest


def test_docker_list_by_digest_is_not_rewritten(client: httpx.Client, docker_list: Image) -> None:
    resp = fetch(client, docker_list, [("Accept", DOCKER_MANIFEST)], reference=docker_list.digest)
    assert_error(resp, 404, "MANIFEST_UNKNOWN")


def test_docker_list_to_a_list_aware_client(client: httpx.Client, docker_list: Image) -> None:
    resp = expect(
        fetch(client, docker_list, [("Accept", DOCKER_MANIFEST), ("Accept", DOCKER_LIST)]), 200
    )
    assert resp.content == docker_list.manifest
    assert resp.headers["Content-Type"] == DOCKER_LIST
    assert_intact(client, docker_list)


def test_docker_list_without_linux_amd64_to_a_schema2_only_client(
    client: httpx.Client, new_repo
) -> None:
    repo = new_repo()
    child = make_image(repo, None, seed="arm-only", media_type=DOCKER_MANIFEST)
    index = make_index(repo, "arm", [child], media_type=DOCKER_LIST, platforms=[("linux", "arm64")])
    push_image(client, index)
    resp = fetch(client, index, [("Accept", DOCKER_MANIFEST)])
    assert_error(resp, 404, "MANIFEST_UNKNOWN")
