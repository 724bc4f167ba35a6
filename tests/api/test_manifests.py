"""Manifests and indexes: push (validated), pull byte for byte, delete."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    Image,
    assert_error,
    assert_intact,
    digest_of,
    expect,
    get_manifest,
    make_image,
    make_index,
    odd_json,
    push_blob,
    push_image,
    push_manifest,
)


def test_push_by_tag(client: httpx.Client, repo: str) -> None:
    image = make_image(repo, "v1", seed="by-tag")
    resp = push_image(client, image)
    assert resp.headers["Location"].endswith(f"/v2/{repo}/manifests/{image.digest}")
    assert resp.headers["Docker-Content-Digest"] == image.digest
    assert_intact(client, image)


def test_push_by_digest(client: httpx.Client, repo: str) -> None:
    image = make_image(repo, None, seed="by-digest")
    resp = push_image(client, image)
    assert resp.headers["Location"].endswith(f"/v2/{repo}/manifests/{image.digest}")
    assert_intact(client, image)
    assert expect(client.get(f"/v2/{repo}/tags/list"), 200).json()["tags"] in ([], None)


def test_push_by_sha512_digest(client: httpx.Client, repo: str) -> None:
    image = make_image(repo, None, seed="sha512")
    for data in image.blobs.values():
        push_blob(client, repo, data)
    digest = digest_of(image.manifest, "sha512")
    resp = push_manifest(client, repo, digest, image.manifest, OCI_MANIFEST)
    assert resp.headers["Docker-Content-Digest"] == digest
    got = expect(get_manifest(client, repo, digest), 200)
    assert got.content == image.manifest
    assert got.headers["Docker-Content-Digest"] == digest


def test_bytes_are_kept_exactly(client: httpx.Client, repo: str) -> None:
    image = make_image(repo, "odd", seed="odd-bytes", annotations={"z": "last", "a": "ünïcødé"})
    assert b"\t" in image.manifest and image.manifest.index(b"layers") < image.manifest.index(
        b"schemaVersion"
    )
    push_image(client, image)
    resp = expect(get_manifest(client, repo, "odd"), 200)
    assert resp.content == image.manifest
    assert digest_of(resp.content) == resp.headers["Docker-Content-Digest"] == image.digest


def test_head_manifest(client: httpx.Client, repo: str) -> None:
    image = make_image(repo, "head", seed="head")
    push_image(client, image)
    for reference in ("head", image.digest):
        resp = expect(get_manifest(client, repo, reference, method="HEAD"), 200)
        assert resp.content == b""
        assert resp.headers["Docker-Content-Digest"] == image.digest
        assert resp.headers["Content-Type"] == OCI_MANIFEST
        assert resp.headers["Content-Length"] == str(len(image.manifest))


def test_manifest_without_media_type_field(client: httpx.Client, repo: str) -> None:
    image = make_image(repo, "bare", seed="bare", with_media_type=False)
    push_image(client, image)
    assert_intact(client, image)


def test_docker_schema2_manifest(client: httpx.Client, repo: str) -> None:
    image = make_image(repo, "docker", seed="docker", media_type=DOCKER_MANIFEST)
    push_image(client, image)
    assert_intact(client, image)
    resp = expect(get_manifest(client, repo, "docker", accept=(DOCKER_MANIFEST,)), 200)
    assert resp.headers["Content-Type"] == DOCKER_MANIFEST


@pytest.mark.parametrize(
    ("list_type", "child_type"),
    [(DOCKER_LIST, DOCKER_MANIFEST), (OCI_INDEX, OCI_MANIFEST)],
    ids=["docker-list", "oci-index"],
)
def test_index_with_children_pushed_first(
    client: httpx.Client, repo: str, list_type: str, child_type: str
) -> None:
    children = [
        make_image(repo, None, seed=f"child-{arch}", media_type=child_type)
        for arch in ("amd64", "arm64")
    ]
    index = make_index(repo, "multi", children, media_type=list_type)
    push_image(client, index)
    assert_intact(client, index)
    resp = expect(get_manifest(client, repo, "multi", accept=(list_type,)), 200)
    assert resp.headers["Content-Type"] == list_type
    assert json.loads(resp.content)["manifests"][0]["digest"] == children[0].digest


def test_index_of_indexes(client: httpx.Client, repo: str) -> None:
    leaf = make_image(repo, None, seed="leaf")
    inner = make_index(repo, None, [leaf])
    outer = make_index(repo, "nested", [inner])
    push_image(client, outer)
    assert_intact(client, outer)


def test_index_referencing_an_absent_child(
    client: httpx.Client, repo: str, known_good: Image
) -> None:
    present = make_image(repo, None, seed="present")
    push_image(client, present)
    absent = make_image(repo, None, seed="absent")
    index = make_index(repo, "broken", [present, absent])
    resp = client.put(
        f"/v2/{repo}/manifests/broken", content=index.manifest, headers={"Content-Type": OCI_INDEX}
    )
    assert_error(resp, 400, "MANIFEST_UNKNOWN")
    assert_error(get_manifest(client, repo, "broken"), 404, "MANIFEST_UNKNOWN")
    assert_error(get_manifest(client, repo, index.digest), 404, "MANIFEST_UNKNOWN")
    assert_intact(client, known_good)


def test_index_referencing_a_child_of_another_repository(
    client: httpx.Client, new_repo: Callable[..., str], known_good: Image
) -> None:
    repo = new_repo()
    index = make_index(repo, "foreign", [known_good])
    resp = client.put(
        f"/v2/{repo}/manifests/foreign", content=index.manifest, headers={"Content-Type": OCI_INDEX}
    )
    assert_error(resp, 400, "MANIFEST_UNKNOWN")
    assert_intact(client, known_good)


def test_manifest_referencing_an_absent_blob(
    client: httpx.Client, repo: str, known_good: Image
) -> None:
    image = make_image(repo, "missing", seed="missing-blob")
    config_digest = next(iter(image.blobs))
    push_blob(client, repo, image.blobs[config_digest])  # the config only, not the layers
    resp = client.put(
        f"/v2/{repo}/manifests/missing",
        content=image.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_error(get_manifest(client, repo, "missing"), 404, "MANIFEST_UNKNOWN")
    assert_intact(client, known_good)


def test_manifest_referencing_a_blob_of_another_repository(
    client: httpx.Client, new_repo: Callable[..., str], known_good: Image
) -> None:
    # Same blobs as the known-good image, which live only in its repository.
    repo = new_repo()
    image = make_image(repo, "borrowed", seed="known-good", layers=3)
    assert set(image.blobs) == set(known_good.blobs)
    resp = client.put(
        f"/v2/{repo}/manifests/borrowed",
        content=image.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_intact(client, known_good)


@pytest.fixture(scope="module")
def valid(client: httpx.Client, new_repo: Callable[..., str]) -> tuple[str, dict]:
    """A repository holding the blobs of a valid manifest, and that manifest's JSON."""
    repo = new_repo()
    image = make_image(repo, None, seed="invalid-base", layers=1)
    for data in image.blobs.values():
        push_blob(client, repo, data)
    return repo, json.loads(image.manifest)


@pytest.mark.parametrize(
    "case",
    [
        "not-json",
        "json-array",
        "schema-version-3",
        "schema-version-missing",
        "schema-version-string",
        "body-type-disagrees",
        "content-type-disagrees",
        "unknown-media-type",
        "layers-not-a-list",
        "config-without-digest",
        "bad-descriptor-digest",
        "negative-size",
        "annotations-not-strings",
        "image-with-manifests",
    ],
)
def test_invalid_manifest(
    client: httpx.Client, valid: tuple[str, dict], known_good: Image, case: str
) -> None:
    repo, body = valid[0], copy.deepcopy(valid[1])
    content_type = OCI_MANIFEST
    if case == "schema-version-3":
        body["schemaVersion"] = 3
    elif case == "schema-version-missing":
        del body["schemaVersion"]
    elif case == "schema-version-string":
        body["schemaVersion"] = "2"
    elif case == "body-type-disagrees":
        body["mediaType"] = DOCKER_MANIFEST
    elif case == "content-type-disagrees":
        content_type = OCI_INDEX
    elif case == "unknown-media-type":
        body["mediaType"] = content_type = "application/vnd.example.unknown+json"
    elif case == "layers-not-a-list":
        body["layers"] = {"oops": True}
    elif case == "config-without-digest":
        del body["config"]["digest"]
    elif case == "bad-descriptor-digest":
        body["layers"][0]["digest"] = "sha256:nothex"
    elif case == "negative-size":
        body["layers"][0]["size"] = -1
    elif case == "annotations-not-strings":
        body["annotations"] = {"n": 1}
    elif case == "image-with-manifests":
        body["manifests"] = []
    payload = odd_json(body)
    if case == "not-json":
        payload = b'{"schemaVersion": 2, "config": '
    elif case == "json-array":
        payload = b"[1, 2]"
    resp = client.put(
        f"/v2/{repo}/manifests/invalid", content=payload, headers={"Content-Type": content_type}
    )
    assert_error(resp, 400, "MANIFEST_INVALID")
    assert_error(get_manifest(client, repo, "invalid"), 404, "MANIFEST_UNKNOWN")
    assert_intact(client, known_good)


def test_invalid_put_does_not_move_an_existing_tag(
    client: httpx.Client, repo: str, known_good: Image
) -> None:
    image = make_image(repo, "stable", seed="stable")
    push_image(client, image)
    resp = client.put(
        f"/v2/{repo}/manifests/stable", content=b"{not json", headers={"Content-Type": OCI_MANIFEST}
    )
    assert_error(resp, 400, "MANIFEST_INVALID")
    assert_intact(client, image)
    assert_intact(client, known_good)


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_manifest_over_4_mib_is_413(
    registry, valid: tuple[str, dict], client: httpx.Client, known_good: Image, streamed: bool
) -> None:
    repo, body = valid[0], copy.deepcopy(valid[1])
    body["annotations"] = {"padding": "x" * (4 * 1024 * 1024)}
    payload = odd_json(body)
    assert len(payload) > 4 * 1024 * 1024

    def pieces():
        for i in range(0, len(payload), 65536):
            yield payload[i : i + 65536]

    # A client of its own: the server may close the connection without reading the whole body.
    with httpx.Client(base_url=registry.url, timeout=30) as own:
        resp = own.put(
            f"/v2/{repo}/manifests/huge",
            content=pieces() if streamed else payload,
            headers={"Content-Type": OCI_MANIFEST},
        )
    assert_error(resp, 413)
    assert_error(get_manifest(client, repo, "huge"), 404, "MANIFEST_UNKNOWN")
    assert_intact(client, known_good)


def test_manifest_of_exactly_4_mib_is_accepted(
    client: httpx.Client, valid: tuple[str, dict]
) -> None:
    repo, body = valid[0], copy.deepcopy(valid[1])
    body["annotations"] = {"padding": ""}
    size = len(odd_json(body))
    body["annotations"]["padding"] = "x" * (4 * 1024 * 1024 - size)
    payload = odd_json(body)
    assert len(payload) == 4 * 1024 * 1024
    push_manifest(client, repo, "limit", payload, OCI_MANIFEST)
    assert expect(get_manifest(client, repo, "limit"), 200).content == payload


def test_put_by_digest_that_does_not_match(
    client: httpx.Client, repo: str, known_good: Image
) -> None:
    image = make_image(repo, None, seed="mismatch")
    for data in image.blobs.values():
        push_blob(client, repo, data)
    wrong = digest_of(image.manifest + b" ")
    resp = client.put(
        f"/v2/{repo}/manifests/{wrong}",
        content=image.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert_error(resp, 400, "DIGEST_INVALID")
    assert_error(get_manifest(client, repo, wrong), 404, "MANIFEST_UNKNOWN")
    assert_error(get_manifest(client, repo, image.digest), 404, "MANIFEST_UNKNOWN")
    assert_intact(client, known_good)


def test_artifact_manifest_with_empty_config(client: httpx.Client, repo: str) -> None:
    image = make_image(
        repo,
        "artifact",
        seed="artifact",
        empty_config=True,
        layers=1,
        layer_type="application/vnd.example.file",
        artifact_type="application/vnd.example.thing.v1",
    )
    assert EMPTY_JSON in image.blobs.values()
    body = json.loads(image.manifest)
    assert body["config"] == {"mediaType": OCI_EMPTY, "digest": digest_of(b"{}"), "size": 2}
    push_image(client, image)
    assert_intact(client, image)
    blob = expect(client.get(f"/v2/{repo}/blobs/{digest_of(b'{}')}"), 200)
    assert blob.content == b"{}"


def test_repushing_the_same_manifest_is_idempotent(client: httpx.Client, repo: str) -> None:
    image = make_image(repo, "again", seed="again")
    push_image(client, image)
    push_manifest(client, repo, "again", image.manifest, OCI_MANIFEST)
    push_manifest(client, repo, image.digest, image.manifest, OCI_MANIFEST)
    assert_intact(client, image)


def test_retagging_moves_the_tag(client: httpx.Client, repo: str) -> None:
    first = make_image(repo, "moving", seed="first")
    second = make_image(repo, "moving", seed="second")
    push_image(client, first)
    push_image(client, second)
    resp = expect(get_manifest(client, repo, "moving"), 200)
    assert resp.content == second.manifest
    # The first manifest is still there by digest.
    assert expect(get_manifest(client, repo, first.digest), 200).content == first.manifest


def test_unknown_manifest(client: httpx.Client, repo: str, known_good: Image) -> None:
    unknown = digest_of(b"no such manifest")
    for reference in ("nope", unknown):
        assert_error(get_manifest(client, repo, reference), 404, "MANIFEST_UNKNOWN")
        assert_error(get_manifest(client, repo, reference, method="HEAD"), 404)
        assert_error(client.delete(f"/v2/{repo}/manifests/{reference}"), 404, "MANIFEST_UNKNOWN")
        assert_error(get_manifest(client, known_good.repo, reference), 404, "MANIFEST_UNKNOWN")
    # Known in another repository only.
    assert_error(get_manifest(client, repo, known_good.digest), 404, "MANIFEST_UNKNOWN")
    assert_error(get_manifest(client, repo, "v1"), 404, "MANIFEST_UNKNOWN")
    assert_intact(client, known_good)


def test_delete_by_tag_removes_only_the_tag(client: httpx.Client, repo: str) -> None:
    image = make_image(repo, "doomed", seed="tag-delete")
    push_image(client, image)
    push_manifest(client, repo, "kept", image.manifest, OCI_MANIFEST)
    expect(client.delete(f"/v2/{repo}/manifests/doomed"), 202)
    assert_error(get_manifest(client, repo, "doomed"), 404, "MANIFEST_UNKNOWN")
    assert expect(get_manifest(client, repo, image.digest), 200).content == image.manifest
    assert expect(get_manifest(client, repo, "kept"), 200).content == image.manifest
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == ["kept"]
    assert_error(client.delete(f"/v2/{repo}/manifests/doomed"), 404, "MANIFEST_UNKNOWN")


def test_delete_by_digest_removes_the_manifest_and_its_tags(
    client: httpx.Client, repo: str, known_good: Image
) -> None:
    image = make_image(repo, "one", seed="digest-delete")
    other = make_image(repo, "other", seed="digest-delete-other")
    push_image(client, image)
    push_image(client, other)
    push_manifest(client, repo, "two", image.manifest, OCI_MANIFEST)
    expect(client.delete(f"/v2/{repo}/manifests/{image.digest}"), 202)
    for reference in (image.digest, "one", "two"):
        assert_error(get_manifest(client, repo, reference), 404, "MANIFEST_UNKNOWN")
        assert_error(get_manifest(client, repo, reference, method="HEAD"), 404)
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == ["other"]
    assert_intact(client, other)
    assert_intact(client, known_good)


def test_deleting_a_manifest_in_one_repository_keeps_it_in_another(
    client: httpx.Client, new_repo: Callable[..., str]
) -> None:
    first, second = new_repo(), new_repo()
    images = [make_image(r, "same", seed="shared-manifest") for r in (first, second)]
    assert images[0].digest == images[1].digest
    for image in images:
        push_image(client, image)
    expect(client.delete(f"/v2/{first}/manifests/{images[0].digest}"), 202)
    assert_error(get_manifest(client, first, "same"), 404, "MANIFEST_UNKNOWN")
    assert_intact(client, images[1])


def test_foreign_layers_need_not_be_pushed(client: httpx.Client, repo: str) -> None:
    """Windows base layers: a Docker foreign layer with urls is fetched elsewhere."""
    image = make_image(repo, "windows", seed="foreign", media_type=DOCKER_MANIFEST, layers=1)
    body = json.loads(image.manifest)
    foreign = {
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "size": 1234,
        "digest": digest_of(b"foreign layer"),
        "urls": ["https://example.invalid/layer"],
    }
    body["layers"].insert(0, foreign)
    payload = odd_json(body)
    for data in image.blobs.values():
        push_blob(client, repo, data)
    push_manifest(client, repo, "windows", payload, DOCKER_MANIFEST)
    assert expect(get_manifest(client, repo, "windows"), 200).content == payload


def test_manifest_referencing_a_deleted_blob(
    client: httpx.Client, repo: str, known_good: Image
) -> None:
    image = make_image(repo, "after-delete", seed="deleted-layer")
    for data in image.blobs.values():
        push_blob(client, repo, data)
    layer = list(image.blobs)[-1]
    expect(client.delete(f"/v2/{repo}/blobs/{layer}"), 202)
    resp = client.put(
        f"/v2/{repo}/manifests/after-delete",
        content=image.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_intact(client, known_good)


def test_refused_manifest_creates_no_repository(
    client: httpx.Client, repo: str, known_good: Image
) -> None:
    image = make_image(repo, "v1", seed="nothing-created")
    resp = client.put(
        f"/v2/{repo}/manifests/v1", content=image.manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_error(client.get(f"/v2/{repo}/tags/list"), 404, "NAME_UNKNOWN")
    assert repo not in client.get("/v2/_catalog").json()["repositories"]
    assert_intact(client, known_good)


def test_repush_after_delete_by_digest(client: httpx.Client, repo: str) -> None:
    image = make_image(repo, "back", seed="repush")
    push_image(client, image)
    expect(client.delete(f"/v2/{repo}/manifests/{image.digest}"), 202)
    assert_error(get_manifest(client, repo, "back"), 404, "MANIFEST_UNKNOWN")
    push_image(client, image)
    assert_intact(client, image)


def test_a_manifest_deleted_between_its_lookup_and_its_read_is_unknown(tmp_path: Path) -> None:
    # GET looks the manifest up, then reads its bytes in a second query; a DELETE committed
    # in between must answer 404 MANIFEST_UNKNOWN, not 500. In process, to hit the window.
    from types import SimpleNamespace

    from starlette.requests import Request

    from registry import errors
    from registry.api import manifests
    from registry.cache import ContentCache
    from registry.db import migrate
    from registry.db.manifests import ManifestRecord
    from registry.db.session import Database

    url = f"sqlite:///{tmp_path / 'berth.db'}"
    migrate.upgrade(url)
    services = SimpleNamespace(db=Database(url), manifests=ContentCache())
    request = Request(
        {"type": "http", "app": SimpleNamespace(state=SimpleNamespace(services=services))}
    )
    gone = ManifestRecord(12345, digest_of(b"deleted meanwhile"), OCI_MANIFEST, 17)
    with pytest.raises(errors.RegistryError) as raised:
        asyncio.run(manifests._payload(request, gone))
    assert raised.value.code is errors.MANIFEST_UNKNOWN and raised.value.status == 404
