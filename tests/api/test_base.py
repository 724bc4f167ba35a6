"""The API root, the error envelope, unsupported methods and what arrives that is not HTTP."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.api.conftest import Image, assert_error, assert_intact, expect, raw_exchange, raw_request
from tests.support.processes import RegistryProcess


def test_api_root_answers_200_with_version_header(client: httpx.Client) -> None:
    resp = expect(client.get("/v2/"), 200)
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    head = expect(client.head("/v2/"), 200)
    assert head.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert head.content == b""


def test_every_answer_names_the_api_version(client: httpx.Client, repo: str) -> None:
    for resp in (
        client.get(f"/v2/{repo}/tags/list"),
        client.post(f"/v2/{repo}/blobs/uploads/"),
        client.get("/v2/_catalog"),
    ):
        assert resp.headers.get("Docker-Distribution-API-Version") == "registry/2.0", resp


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v2/"),
        ("DELETE", "/v2/"),
        ("POST", "/v2/{repo}/manifests/latest"),
        ("PATCH", "/v2/{repo}/manifests/latest"),
        ("PATCH", "/v2/{repo}/blobs/sha256:" + "0" * 64),
        ("PUT", "/v2/{repo}/blobs/sha256:" + "0" * 64),
        ("DELETE", "/v2/{repo}/tags/list"),
        ("POST", "/v2/_catalog"),
        ("GET", "/v2/{repo}/blobs/uploads/"),
        ("PUT", "/v2/{repo}/blobs/uploads/"),
        ("PUT", "/v2/{repo}/referrers/sha256:" + "0" * 64),
    ],
)
def test_unsupported_method_on_known_path_is_405_in_oci_format(
    client: httpx.Client, known_good: Image, repo: str, method: str, path: str
) -> None:
    resp = client.request(method, path.format(repo=repo), content=b"{}")
    assert_error(resp, 405, "UNSUPPORTED")
    assert_intact(client, known_good)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v2/", {"GET", "HEAD"}),
        ("POST", "/v2/{repo}/manifests/latest", {"GET", "HEAD", "PUT", "DELETE"}),
    ],
)
def test_405_names_the_allowed_methods(
    client: httpx.Client, repo: str, method: str, path: str, allowed: set[str]
) -> None:
    resp = client.request(method, path.format(repo=repo))
    assert_error(resp, 405)
    assert "Allow" in resp.headers, resp.headers
    assert {m.strip() for m in resp.headers["Allow"].split(",")} == allowed


def test_unknown_path_is_404_in_oci_format(client: httpx.Client) -> None:
    assert_error(client.get("/v3/"), 404)
    assert_error(client.get("/v2/x/unknown-endpoint/y"), 404)
    assert_error(client.head("/v2/x/unknown-endpoint/y"), 404)


def test_tls_client_hello_on_plain_port_gets_http_400(
    registry: RegistryProcess, client: httpx.Client, known_good: Image
) -> None:
    # Record type handshake (0x16), TLS 1.0 record version, length, ClientHello (0x01) ...
    hello = bytes([0x16, 0x03, 0x01, 0x00, 0xF4, 0x01, 0x00, 0x00, 0xF0, 0x03, 0x03])
    answer = raw_exchange(registry, hello + os.urandom(32) + b"\x00" * 64, timeout=5)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    # The server is still serving ordinary requests.
    expect(client.get("/v2/"), 200)
    assert_intact(client, known_good)


@pytest.mark.parametrize(
    "path",
    [
        "/v2/{repo}/manifests/absent",
        "/v2/{repo}/blobs/sha256:" + "0" * 64,
        "/v2/{repo}/blobs/sha256:bad",
        "/v2/Bad/manifests/latest",
        "/v2/{repo}/tags/list",
    ],
)
def test_head_errors_have_no_body_on_the_wire(
    registry: RegistryProcess, repo: str, path: str
) -> None:
    # httpx never reads a HEAD body; read the raw bytes to be sure none is sent.
    status, body = raw_request(registry, "HEAD", path.format(repo=repo))
    assert status in (400, 404)
    assert body == b""
