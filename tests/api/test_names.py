"""Repository names, tags and digests from the URL: refused before any storage is touched."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import (
    OCI_MANIFEST,
    Image,
    assert_error,
    assert_intact,
    deterministic_bytes,
    digest_of,
    expect,
    get_manifest,
    make_image,
    push_blob,
    push_image,
    push_manifest,
    raw_request,
)
from tests.support.processes import RegistryProcess

INVALID_NAMES = {
    "uppercase": "Library/app",
    "trailing-slash": "library/app/",
    "leading-slash": "/library/app",
    "double-slash": "library//app",
    "leading-dash": "-app/x",
    "trailing-dash": "app-/x",
    "leading-dot": ".app/x",
    "dotdot-component": "library/../app",
    "double-dot": "app..x/y",
    "leading-underscore": "_app/x",
    "triple-underscore": "a___b/x",
    "space": "my app/x",
    "non-ascii": "åpp/x",
    "too-long": "a" * 256,
    "too-long-with-slashes": ("abcdefghi/" * 26)[:-1],
}
VALID_LONG_NAME = ("abcdefghi/" * 26)[:255].rstrip("/")


def _enc(name: str) -> str:
    # Keep '/', percent-encode what httpx would otherwise refuse or normalise.
    return name.replace(" ", "%20").replace("å", "%C3%A5")


@pytest.mark.parametrize("name", list(INVALID_NAMES.values()), ids=list(INVALID_NAMES))
def test_invalid_names_are_name_invalid(
    registry: RegistryProcess, client: httpx.Client, known_good: Image, name: str
) -> None:
    path = _enc(name)
    digest = digest_of(b"x")
    requests = [
        ("GET", f"/v2/{path}/tags/list"),
        ("POST", f"/v2/{path}/blobs/uploads/"),
        ("GET", f"/v2/{path}/manifests/latest"),
        ("PUT", f"/v2/{path}/manifests/latest"),
        ("GET", f"/v2/{path}/blobs/{digest}"),
        ("DELETE", f"/v2/{path}/blobs/{digest}"),
        ("GET", f"/v2/{path}/referrers/{digest}"),
    ]
    for method, raw_path in requests:
        # On the wire exactly as written: httpx would resolve '..' and collapse nothing else.
        status, body = raw_request(registry, method, raw_path)
        assert status == 400, (method, raw_path, status, body)
        assert json.loads(body)["errors"][0]["code"] == "NAME_INVALID", (method, raw_path, body)
    resp = client.head(f"/v2/{path}/manifests/latest") if ".." not in name else None
    if resp is not None:
        assert_error(resp, 400)
    assert not any(name in r for r in client.get("/v2/_catalog").json()["repositories"])
    assert_intact(client, known_good)


def test_longest_valid_name(client: httpx.Client) -> None:
    assert len(VALID_LONG_NAME) == 255
    image = make_image(VALID_LONG_NAME, "v1", seed="long-name", layers=1)
    push_image(client, image)
    assert_intact(client, image)
    tags = expect(client.get(f"/v2/{VALID_LONG_NAME}/tags/list"), 200).json()
    assert tags == {"name": VALID_LONG_NAME, "tags": ["v1"]}


@pytest.mark.parametrize(
    "name", ["a", "a/b", "a-b/c_d", "a__b/c.d", "a--b/c---d", "0/1/2/3/4/5/6/7/8/9", "x.y.z/q"]
)
def test_valid_names(client: httpx.Client, name: str) -> None:
    push_blob(client, name, b"valid name " + name.encode())
    expect(client.get(f"/v2/{name}/blobs/{digest_of(b'valid name ' + name.encode())}"), 200)


INVALID_TAGS = {
    "leading-dot": ".hidden",
    "leading-dash": "-dash",
    "too-long": "t" * 129,
    "space": "my%20tag",
    "non-ascii": "t%C3%A4g",
    "plus": "v1+build",
    "tilde": "v1~rc",
}


@pytest.fixture(scope="module")
def tag_repo_image(client: httpx.Client, new_repo) -> Image:
    image = make_image(new_repo(), None, seed="tag-validation", layers=1)
    push_image(client, image)
    return image


@pytest.mark.parametrize("tag", list(INVALID_TAGS.values()), ids=list(INVALID_TAGS))
def test_invalid_tags_are_tag_invalid(
    client: httpx.Client, tag_repo_image: Image, known_good: Image, tag: str
) -> None:
    repo = tag_repo_image.repo
    resp = client.put(
        f"/v2/{repo}/manifests/{tag}",
        content=tag_repo_image.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert_error(resp, 400, "TAG_INVALID")
    assert_error(get_manifest(client, repo, tag), 400, "TAG_INVALID")
    assert_error(get_manifest(client, repo, tag, method="HEAD"), 400)
    assert_error(client.delete(f"/v2/{repo}/manifests/{tag}"), 400, "TAG_INVALID")
    assert expect(client.get(f"/v2/{repo}/tags/list"), 200).json()["tags"] in ([], None)
    assert_intact(client, known_good)


@pytest.mark.parametrize("tag", ["t" * 128, "_underscore", "0", "A.b-c_D", "latest"])
def test_valid_tags(client: httpx.Client, tag_repo_image: Image, tag: str) -> None:
    repo = tag_repo_image.repo
    push_manifest(client, repo, tag, tag_repo_image.manifest, OCI_MANIFEST)
    assert expect(get_manifest(client, repo, tag), 200).content == tag_repo_image.manifest
    expect(client.delete(f"/v2/{repo}/manifests/{tag}"), 202)


HEX = digest_of(b"x").split(":")[1]
MALFORMED_DIGESTS = {
    "short": "sha256:abc",
    "long": f"sha256:{HEX}0",
    "uppercase-hex": f"sha256:{HEX.upper()}",
    "not-hex": "sha256:" + "g" * 64,
    "uppercase-algorithm": f"SHA256:{HEX}",
    "md5": "md5:" + "0" * 32,
    "unknown-algorithm": f"blake9:{HEX}",
    "empty-hex": "sha256:",
    "no-algorithm": f":{HEX}",
    "sha512-too-short": f"sha512:{HEX}",
}


@pytest.mark.parametrize("digest", list(MALFORMED_DIGESTS.values()), ids=list(MALFORMED_DIGESTS))
def test_malformed_digests_are_digest_invalid(
    client: httpx.Client, known_good: Image, digest: str
) -> None:
    repo = known_good.repo
    for resp in (
        client.get(f"/v2/{repo}/blobs/{digest}"),
        client.delete(f"/v2/{repo}/blobs/{digest}"),
        get_manifest(client, repo, digest),
        client.delete(f"/v2/{repo}/manifests/{digest}"),
        client.put(
            f"/v2/{repo}/manifests/{digest}",
            content=known_good.manifest,
            headers={"Content-Type": OCI_MANIFEST},
        ),
        client.post(f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": repo}),
        client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=b"x"),
        client.get(f"/v2/{repo}/referrers/{digest}"),
    ):
        assert_error(resp, 400, "DIGEST_INVALID")
    assert_error(client.head(f"/v2/{repo}/blobs/{digest}"), 400)
    assert_error(get_manifest(client, repo, digest, method="HEAD"), 400)
    assert_intact(client, known_good)


TRAVERSALS = [
    ("GET", "/v2/%2e%2e/%2e%2e/%2e%2e/etc/tags/list"),
    ("GET", "/v2/known/%2e%2e/good/manifests/v1"),
    ("GET", "/v2/known/../good/manifests/v1"),
    ("POST", "/v2/%2e%2e%2f%2e%2e%2fescape/blobs/uploads/"),
    ("POST", "/v2/..%2F..%2Fescape/blobs/uploads/"),
    ("PUT", "/v2/%2e%2e/escape/manifests/latest"),
    ("PUT", "/v2/known/good/manifests/%2e%2e%2f%2e%2e%2fescape"),
    ("GET", "/v2/known/good/blobs/sha256:%2e%2e%2f%2e%2e%2f%2e%2e%2fescape"),
    ("GET", "/v2/known/good/blobs/sha256%3a..%2f..%2f..%2fescape"),
    ("DELETE", "/v2/known/good/blobs/..%2f..%2fescape"),
    ("GET", "/v2/known/good/blobs/uploads/%2e%2e%2f%2e%2e%2f%2e%2e%2fescape"),
    ("PATCH", "/v2/known/good/blobs/uploads/%2e%2e"),
    ("DELETE", "/v2/known/good/blobs/uploads/..%2F..%2F..%2F..%2Fstorage"),
    ("GET", "/v2/known/good/referrers/sha256:%2e%2e%2f%2e%2e%2fescape"),
]


@pytest.mark.parametrize(("method", "raw_path"), TRAVERSALS)
def test_path_traversal_never_reaches_storage(
    registry: RegistryProcess, client: httpx.Client, known_good: Image, method: str, raw_path: str
) -> None:
    assert registry.data_dir is not None
    before = _tree(registry.data_dir.parent)
    status, body = raw_request(registry, method, raw_path)
    assert status in (400, 404), (status, body)
    error = json.loads(body)["errors"][0]
    assert error["code"] in (
        "NAME_INVALID",
        "TAG_INVALID",
        "DIGEST_INVALID",
        "BLOB_UPLOAD_UNKNOWN",
        "NOT_FOUND",
    ), body
    after = _tree(registry.data_dir.parent)
    escaped = {p for p in after - before if "escape" in p or "storage" not in p}
    assert not escaped, escaped
    assert not any("escape" in p for p in after)
    assert_intact(client, known_good)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if "berth.db" not in p.name}


def test_percent_encoded_valid_name_is_the_same_repository(
    registry: RegistryProcess, known_good: Image
) -> None:
    # %2F decodes to '/', so this is the known-good repository itself, not a new one.
    status, body = raw_request(registry, "GET", "/v2/known%2Fgood/tags/list")
    assert status == 200, body
    assert json.loads(body) == {"name": "known/good", "tags": ["v1"]}


def test_blob_digest_in_path_and_content_mismatch_cannot_be_forged(
    client: httpx.Client, repo: str, known_good: Image
) -> None:
    # Claiming the known-good config's digest for other content must not replace it.
    digest, original = next(iter(known_good.blobs.items()))
    forged = deterministic_bytes("forged", len(original))
    resp = client.post(
        f"/v2/{known_good.repo}/blobs/uploads/", params={"digest": digest}, content=forged
    )
    assert_error(resp, 400, "DIGEST_INVALID")
    assert_intact(client, known_good)
