"""registry.oci.manifest: what a pushed manifest references, and what is refused."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from registry.errors import RegistryError
from registry.oci import manifest
from registry.oci import mediatypes as mt
from registry.oci.digest import sha256

EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
SBOM = "application/vnd.example.sbom.v1+json"
SIGNATURE = "application/vnd.example.signature.v1"


def desc(media_type: str, content: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(content), "size": len(content), **extra}


def image(
    media_type: str | None = mt.OCI_MANIFEST,
    config_type: str = OCI_CONFIG,
    layer_type: str = OCI_LAYER,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "config": desc(config_type, b"config"),
        "layers": [desc(layer_type, b"layer-1"), desc(layer_type, b"layer-2")],
        **extra,
    }
    if media_type is not None:
        body["mediaType"] = media_type
    return body


def index(media_type: str | None = mt.OCI_INDEX, **extra: Any) -> dict[str, Any]:
    child_type = mt.DOCKER_MANIFEST if media_type == mt.DOCKER_LIST else mt.OCI_MANIFEST
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "manifests": [
            desc(child_type, b"amd64", platform={"os": "linux", "architecture": "amd64"}),
            desc(
                child_type,
                b"arm64",
                platform={"os": "linux", "architecture": "arm64", "variant": "v8"},
            ),
        ],
        **extra,
    }
    if media_type is not None:
        body["mediaType"] = media_type
    return body


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


def parse(body: Any, content_type: str | None = None) -> manifest.Manifest:
    return manifest.parse(encode(body), content_type)


def assert_invalid(
    payload: bytes, content_type: str | None, status: int = 400, match: str | None = None
) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        manifest.parse(payload, content_type)
    assert info.value.code.code == "MANIFEST_INVALID"
    assert info.value.status == status
    if match is not None:
        assert match in info.value.message
    return info.value


# --- the four kinds of manifest -------------------------------------------------------------


def test_oci_image_manifest() -> None:
    body = image(annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"})
    m = parse(body, mt.OCI_MANIFEST)
    assert m.media_type == mt.OCI_MANIFEST
    assert not m.is_index
    assert m.config == manifest.Descriptor(OCI_CONFIG, sha256(b"config"), 6)
    assert [layer.digest for layer in m.layers] == [sha256(b"layer-1"), sha256(b"layer-2")]
    assert all(layer.media_type == OCI_LAYER and layer.size == 7 for layer in m.layers)
    assert m.manifests == ()
    assert m.subject is None
    assert m.artifact_type is None
    assert m.annotations == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
    assert [d.digest for d in m.blob_references()] == [
        sha256(b"config"),
        sha256(b"layer-1"),
        sha256(b"layer-2"),
    ]


def test_oci_index() -> None:
    m = parse(index(annotations={"a": "b"}), mt.OCI_INDEX)
    assert m.media_type == mt.OCI_INDEX
    assert m.is_index
    assert m.config is None
    assert m.layers == ()
    assert [c.digest for c in m.manifests] == [sha256(b"amd64"), sha256(b"arm64")]
    assert m.manifests[0].media_type == mt.OCI_MANIFEST
    assert m.manifests[1].platform == {"os": "linux", "architecture": "arm64", "variant": "v8"}
    assert m.blob_references() == []
    assert m.annotations == {"a": "b"}


def test_empty_index_is_valid() -> None:
    m = parse({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}, mt.OCI_INDEX)
    assert m.is_index
    assert m.manifests == ()


def test_docker_schema2_manifest() -> None:
    body = image(mt.DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
    m = parse(body, mt.DOCKER_MANIFEST)
    assert m.media_type == mt.DOCKER_MANIFEST
    assert not m.is_index
    assert m.config is not None and m.config.media_type == DOCKER_CONFIG
    assert len(m.layers) == 2
    assert len(m.blob_references()) == 3
    assert m.referrer_artifact_type == DOCKER_CONFIG


def test_docker_manifest_list() -> None:
    m = parse(index(mt.DOCKER_LIST), mt.DOCKER_LIST)
    assert m.media_type == mt.DOCKER_LIST
    assert m.is_index
    assert [c.media_type for c in m.manifests] == [mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST]
    assert m.blob_references() == []


def test_artifact_with_artifact_type_and_empty_config() -> None:
    subject = desc(mt.OCI_MANIFEST, b"the image")
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": SBOM,
        "config": {"mediaType": mt.OCI_EMPTY, "digest": EMPTY_DIGEST, "size": 2, "data": "e30="},
        "layers": [desc("application/spdx+json", b"{}")],
        "subject": subject,
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }
    m = parse(body, mt.OCI_MANIFEST)
    assert m.artifact_type == SBOM
    assert m.referrer_artifact_type == SBOM
    assert m.config is not None and m.config.media_type == mt.OCI_EMPTY
    assert m.config.digest == EMPTY_DIGEST
    # The empty config is a blob like any other: the registry must hold it.
    assert [d.digest for d in m.blob_references()] == [EMPTY_DIGEST, sha256(b"{}")]
    assert m.subject == manifest.Descriptor(mt.OCI_MANIFEST, sha256(b"the image"), 9)


def test_artifact_without_layers() -> None:
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": SIGNATURE,
        "config": {"mediaType": mt.OCI_EMPTY, "digest": EMPTY_DIGEST, "size": 2},
    }
    m = parse(body, mt.OCI_MANIFEST)
    assert m.layers == ()
    assert [d.digest for d in m.blob_references()] == [EMPTY_DIGEST]


def test_subject_keeps_its_fields() -> None:
    subject = desc(
        mt.OCI_INDEX,
        b"index",
        artifactType="application/x",
        annotations={"k": "v"},
        platform={"os": "linux"},
    )
    m = parse(image(subject=subject), mt.OCI_MANIFEST)
    assert m.subject == manifest.Descriptor(
        media_type=mt.OCI_INDEX,
        digest=sha256(b"index"),
        size=5,
        artifact_type="application/x",
        annotations={"k": "v"},
        platform={"os": "linux"},
    )


def test_null_subject_is_no_subject() -> None:
    assert parse(image(subject=None), mt.OCI_MANIFEST).subject is None


def test_index_with_subject_and_artifact_type() -> None:
    m = parse(index(artifactType=SBOM, subject=desc(mt.OCI_MANIFEST, b"s")), mt.OCI_INDEX)
    assert m.subject is not None and m.subject.digest == sha256(b"s")
    assert m.referrer_artifact_type == SBOM


# --- foreign layers ---------------------------------------------------------------------------


@pytest.mark.parametrize("foreign_type", [DOCKER_FOREIGN, OCI_NONDISTRIBUTABLE])
def test_foreign_layers_with_urls_are_not_required_blobs(foreign_type: str) -> None:
    body = image(mt.DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
    if foreign_type == OCI_NONDISTRIBUTABLE:
        body = image()
    foreign = desc(foreign_type, b"windows base", urls=["https://example.com/base.tar.gz"])
    body["layers"].insert(0, foreign)
    m = parse(body, body["mediaType"])
    assert len(m.layers) == 3
    assert m.layers[0].foreign
    assert m.layers[0].urls == ("https://example.com/base.tar.gz",)
    refs = [d.digest for d in m.blob_references()]
    assert sha256(b"windows base") not in refs
    assert refs == [sha256(b"config"), sha256(b"layer-1"), sha256(b"layer-2")]


def test_foreign_media_type_without_urls_is_a_required_blob() -> None:
    body = image(mt.DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
    body["layers"].append(desc(DOCKER_FOREIGN, b"no urls"))
    m = parse(body, mt.DOCKER_MANIFEST)
    assert not m.layers[-1].foreign
    assert sha256(b"no urls") in [d.digest for d in m.blob_references()]


def test_ordinary_layer_with_urls_is_a_required_blob() -> None:
    body = image()
    body["layers"][0]["urls"] = ["https://example.com/mirror"]
    m = parse(body, mt.OCI_MANIFEST)
    assert not m.layers[0].foreign
    assert sha256(b"layer-1") in [d.digest for d in m.blob_references()]


# --- the media type: Content-Type and body ----------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [image(), index(), image(mt.DOCKER_MANIFEST), index(mt.DOCKER_LIST)],
    ids=["oci-manifest", "oci-index", "docker-manifest", "docker-list"],
)
def test_content_type_and_body_agree(body: dict[str, Any]) -> None:
    assert parse(body, body["mediaType"]).media_type == body["mediaType"]


def test_content_type_parameters_and_case_are_ignored() -> None:
    header = "Application/VND.OCI.Image.Manifest.v1+JSON; charset=utf-8"
    assert parse(image(), header).media_type == mt.OCI_MANIFEST


def test_content_type_alone_names_the_type() -> None:
    assert parse(image(media_type=None), mt.OCI_MANIFEST).media_type == mt.OCI_MANIFEST
    assert parse(index(media_type=None), mt.OCI_INDEX).media_type == mt.OCI_INDEX


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (image(mt.OCI_MANIFEST), mt.DOCKER_MANIFEST),
        (image(mt.DOCKER_MANIFEST), mt.OCI_MANIFEST),
        (image(mt.OCI_MANIFEST), mt.OCI_INDEX),
        (index(mt.OCI_INDEX), mt.DOCKER_LIST),
        (index(mt.DOCKER_LIST), mt.OCI_INDEX),
        (index(mt.OCI_INDEX), mt.OCI_MANIFEST),
        (image(mt.OCI_MANIFEST), "text/plain"),
        (image(mt.OCI_MANIFEST), OCI_CONFIG),
    ],
)
def test_content_type_and_body_disagree(body: dict[str, Any], content_type: str) -> None:
    assert_invalid(encode(body), content_type)


@pytest.mark.parametrize("content_type", [None, "", "application/json", "application/octet-stream"])
@pytest.mark.parametrize(
    "body",
    [image(), index(), image(mt.DOCKER_MANIFEST), index(mt.DOCKER_LIST)],
    ids=["oci-manifest", "oci-index", "docker-manifest", "docker-list"],
)
def test_body_media_type_with_generic_or_no_content_type(
    body: dict[str, Any], content_type: str | None
) -> None:
    assert parse(body, content_type).media_type == body["mediaType"]


def test_application_json_with_parameters_still_trusts_the_body() -> None:
    assert parse(index(), "application/json; charset=utf-8").media_type == mt.OCI_INDEX


def test_neither_content_type_nor_body_infers_image_manifest() -> None:
    m = parse(image(media_type=None), None)
    assert m.media_type == mt.OCI_MANIFEST
    assert len(m.blob_references()) == 3


def test_neither_content_type_nor_body_infers_index() -> None:
    m = parse(index(media_type=None), None)
    assert m.media_type == mt.OCI_INDEX
    assert len(m.manifests) == 2


def test_neither_and_no_telling_fields_is_invalid() -> None:
    assert_invalid(encode({"schemaVersion": 2, "layers": []}), None)


@pytest.mark.parametrize(
    ("body_type", "content_type"),
    [
        ("application/vnd.example.unknown+json", None),
        ("application/vnd.example.unknown+json", "application/json"),
        (mt.OCI_EMPTY, None),
        (None, "application/vnd.example.unknown+json"),
        (None, OCI_CONFIG),
    ],
)
def test_unsupported_media_types(body_type: str | None, content_type: str | None) -> None:
    exc = assert_invalid(encode(image(media_type=body_type)), content_type)
    assert "unsupported" in exc.message


@pytest.mark.parametrize("body_type", [2, ["x"], {"a": "b"}, True])
def test_body_media_type_must_be_a_string(body_type: Any) -> None:
    body = image()
    body["mediaType"] = body_type
    assert_invalid(encode(body), mt.OCI_MANIFEST)


# --- schema versions --------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED])
def test_schema1_content_type_refused(content_type: str) -> None:
    body = {"schemaVersion": 1, "name": "x", "tag": "latest", "fsLayers": [], "history": []}
    exc = assert_invalid(encode(body), content_type)
    assert "schema 1" in exc.message


@pytest.mark.parametrize("content_type", [None, "application/json", mt.DOCKER_MANIFEST])
def test_schema1_body_refused(content_type: str | None) -> None:
    body = {"schemaVersion": 1, "name": "x", "tag": "latest", "fsLayers": [], "history": []}
    exc = assert_invalid(encode(body), content_type)
    assert "schema 1" in exc.message


def test_schema1_content_type_refused_even_with_a_schema2_body() -> None:
    assert_invalid(encode(image(media_type=None)), mt.DOCKER_SCHEMA1_SIGNED, match="schema 1")


@pytest.mark.parametrize("version", [None, 0, 3, "2", 2.5, [2]])
def test_schema_version_must_be_2(version: Any) -> None:
    body = image()
    if version is None:
        del body["schemaVersion"]
    else:
        body["schemaVersion"] = version
    assert_invalid(encode(body), mt.OCI_MANIFEST, match="schemaVersion")


# --- malformed bodies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"", b"{", b"not json", b'{"schemaVersion": 2,}', b"\xff\xfe\xfa", b"{'a': 1}"],
)
def test_invalid_json(payload: bytes) -> None:
    assert_invalid(payload, mt.OCI_MANIFEST, match="not valid JSON")


@pytest.mark.parametrize("payload", [b"[]", b"[{}]", b'"manifest"', b"2", b"null", b"true"])
def test_body_must_be_an_object(payload: bytes) -> None:
    assert_invalid(payload, mt.OCI_MANIFEST, match="not a JSON object")


def test_deeply_nested_json_is_invalid_not_a_crash() -> None:
    assert_invalid(b"[" * 100_000, mt.OCI_MANIFEST)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_manifest_must_be_utf8(encoding: str) -> None:
    assert_invalid(json.dumps(image()).encode(encoding), mt.OCI_MANIFEST)


def test_image_manifest_may_not_list_manifests() -> None:
    body = image()
    body["manifests"] = []
    assert_invalid(encode(body), mt.OCI_MANIFEST, match="may not list manifests")


@pytest.mark.parametrize("manifests", [None, {}, "x"])
def test_index_needs_a_manifests_list(manifests: Any) -> None:
    body = index()
    if manifests is None:
        del body["manifests"]
    else:
        body["manifests"] = manifests
    assert_invalid(encode(body), mt.OCI_INDEX, match="manifests list")


def test_image_manifest_needs_a_config() -> None:
    body = image()
    del body["config"]
    assert_invalid(encode(body), mt.OCI_MANIFEST, match="config")


@pytest.mark.parametrize("layers", [None, {}, "x"])
def test_docker_manifest_needs_a_layers_list(layers: Any) -> None:
    body = image(mt.DOCKER_MANIFEST)
    if layers is None:
        del body["layers"]
    else:
        body["layers"] = layers
    assert_invalid(encode(body), mt.DOCKER_MANIFEST, match="layers")


@pytest.mark.parametrize(
    "extra",
    [{"artifactType": SBOM}, {"subject": desc(mt.DOCKER_MANIFEST, b"s")}],
    ids=["artifactType", "subject"],
)
def test_docker_manifest_carries_no_artifact_fields(extra: dict[str, Any]) -> None:
    assert_invalid(encode(image(mt.DOCKER_MANIFEST, **extra)), mt.DOCKER_MANIFEST)


@pytest.mark.parametrize("annotations", [{"a": 1}, {"a": None}, {"a": ["b"]}, ["a"], "a"])
def test_top_level_annotations_map_strings_to_strings(annotations: Any) -> None:
    assert_invalid(encode(image(annotations=annotations)), mt.OCI_MANIFEST, match="annotations")


@pytest.mark.parametrize("artifact_type", [1, ["x"], {"a": "b"}])
def test_top_level_artifact_type_must_be_a_string(artifact_type: Any) -> None:
    assert_invalid(encode(image(artifactType=artifact_type)), mt.OCI_MANIFEST, match="artifactType")


# --- descriptors ------------------------------------------------------------------------------


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda d: d.pop(key)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d.__setitem__(key, value)


BAD_DESCRIPTORS: dict[str, Callable[[dict[str, Any]], None]] = {
    "missing-digest": _drop("digest"),
    "missing-size": _drop("size"),
    "missing-mediaType": _drop("mediaType"),
    "empty-mediaType": _set("mediaType", ""),
    "int-mediaType": _set("mediaType", 1),
    "null-digest": _set("digest", None),
    "int-digest": _set("digest", 1),
    "negative-size": _set("size", -1),
    "bool-size": _set("size", True),
    "false-size": _set("size", False),
    "float-size": _set("size", 1.5),
    "string-size": _set("size", "6"),
    "null-size": _set("size", None),
    "uppercase-digest": _set("digest", sha256(b"x").upper()),
    "short-digest": _set("digest", sha256(b"x")[:-1]),
    "unknown-algorithm-digest": _set("digest", "md5:" + "0" * 32),
    "garbage-digest": _set("digest", "latest"),
    "non-string-annotation": _set("annotations", {"a": 1}),
    "nested-annotation-value": _set("annotations", {"a": "b", "c": {"d": "e"}}),
    "list-annotations": _set("annotations", ["a"]),
    "list-platform": _set("platform", ["linux"]),
    "string-urls": _set("urls", "https://example.com"),
    "non-string-url": _set("urls", [1]),
    "int-artifactType": _set("artifactType", 1),
}


def _descriptor_sites() -> list[tuple[str, dict[str, Any], str, Callable[[dict[str, Any]], Any]]]:
    """(where, body, content type, accessor of the descriptor to break)."""
    return [
        ("config", image(), mt.OCI_MANIFEST, lambda b: b["config"]),
        ("layers[1]", image(), mt.OCI_MANIFEST, lambda b: b["layers"][1]),
        ("manifests[0]", index(), mt.OCI_INDEX, lambda b: b["manifests"][0]),
        (
            "subject",
            image(subject=desc(mt.OCI_MANIFEST, b"s")),
            mt.OCI_MANIFEST,
            lambda b: b["subject"],
        ),
    ]


@pytest.mark.parametrize("breakage", list(BAD_DESCRIPTORS), ids=list(BAD_DESCRIPTORS))
@pytest.mark.parametrize("site", _descriptor_sites(), ids=[s[0] for s in _descriptor_sites()])
def test_bad_descriptors(
    site: tuple[str, dict[str, Any], str, Callable[[dict[str, Any]], Any]], breakage: str
) -> None:
    where, body, content_type, accessor = site
    body = copy.deepcopy(body)
    BAD_DESCRIPTORS[breakage](accessor(body))
    exc = assert_invalid(encode(body), content_type)
    assert where in exc.message


@pytest.mark.parametrize("value", [None, "x", 1, [], ["a"]])
def test_descriptor_must_be_an_object(value: Any) -> None:
    body = image()
    body["layers"][0] = value
    assert_invalid(encode(body), mt.OCI_MANIFEST, match="layers[0]")


def test_zero_size_descriptor_is_valid() -> None:
    body = image()
    body["layers"][0] = desc(OCI_LAYER, b"")
    assert parse(body, mt.OCI_MANIFEST).layers[0].size == 0


def test_sha512_descriptor_is_valid() -> None:
    body = image()
    body["layers"][0]["digest"] = "sha512:" + "0" * 128
    assert parse(body, mt.OCI_MANIFEST).layers[0].digest == "sha512:" + "0" * 128


# --- size limit -------------------------------------------------------------------------------


def test_over_4_mib_is_413() -> None:
    payload = encode(image())
    payload += b" " * (manifest.MAX_MANIFEST_SIZE + 1 - len(payload))
    assert len(payload) == 4 * 1024 * 1024 + 1
    exc = assert_invalid(payload, mt.OCI_MANIFEST, status=413)
    assert exc.detail == {"size": len(payload), "limit": 4 * 1024 * 1024}


def test_exactly_4_mib_is_accepted() -> None:
    payload = encode(image())
    payload += b" " * (manifest.MAX_MANIFEST_SIZE - len(payload))
    assert len(payload) == 4 * 1024 * 1024
    assert manifest.parse(payload, mt.OCI_MANIFEST).media_type == mt.OCI_MANIFEST


def test_size_is_checked_before_parsing() -> None:
    # Not JSON at all, yet the answer is 413: the body is never read past the limit.
    assert_invalid(b"x" * (manifest.MAX_MANIFEST_SIZE + 1), mt.OCI_MANIFEST, status=413)


# --- referrer_artifact_type -------------------------------------------------------------------


def test_referrer_artifact_type_prefers_artifact_type() -> None:
    assert parse(image(artifactType=SBOM), mt.OCI_MANIFEST).referrer_artifact_type == SBOM


def test_referrer_artifact_type_falls_back_to_config_media_type() -> None:
    body = image(config_type="application/vnd.example.signature.config+json")
    m = parse(body, mt.OCI_MANIFEST)
    assert m.artifact_type is None
    assert m.referrer_artifact_type == "application/vnd.example.signature.config+json"


def test_empty_artifact_type_falls_back_to_config_media_type() -> None:
    m = parse(image(artifactType=""), mt.OCI_MANIFEST)
    assert m.referrer_artifact_type == OCI_CONFIG


def test_index_without_artifact_type_has_none() -> None:
    assert parse(index(), mt.OCI_INDEX).referrer_artifact_type is None
