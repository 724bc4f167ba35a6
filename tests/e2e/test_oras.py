"""oras-py against the registry: artifacts with files, artifact types and referrers.

oras-py's request wrapper retries a 500 response or a connection error five times
with growing sleeps (about two minutes in all), so a registry crash shows up here
as a slow failure rather than a fast one.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import oras.client
import oras.oci
import pytest

from tests.support.images import ImageLayout, read_blob, sha256_digest
from tests.support.processes import RegistryAPI, RegistryProcess, describe

pytestmark = pytest.mark.e2e

CONFIG_TYPE = "application/vnd.berth.test.config.v1+json"
FILE_TYPE = "application/vnd.berth.test.file.v1"
SBOM_TYPE = "application/vnd.berth.test.sbom.v1+json"
SIGNATURE_TYPE = "application/vnd.berth.test.signature.v1"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture
def client(registry: RegistryProcess) -> oras.client.OrasClient:
    return oras.client.OrasClient(hostname=registry.address, insecure=True)


def write_files(directory: Path) -> dict[str, bytes]:
    files = {
        "notes.txt": b"berth e2e artifact\n",
        "data.json": json.dumps({"answer": 42, "list": list(range(50))}).encode(),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return files


def push_image_raw(api: RegistryAPI, repo: str, layout: ImageLayout, tag: str) -> None:
    """Push an image byte for byte (oras-py would re-serialise the manifest JSON)."""
    image = layout.image
    for digest in image.blob_digests:
        # The POST-then-PUT upload every client supports.
        resp = api.client.post(f"/v2/{repo}/blobs/uploads/")
        assert resp.status_code == 202, describe(resp)
        location = httpx.URL(resp.headers["Location"])
        resp = api.client.put(
            location.copy_merge_params({"digest": digest}),
            content=read_blob(layout.path, digest),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert resp.status_code == 201, describe(resp)
    resp = api.client.put(
        f"/v2/{repo}/manifests/{tag}",
        content=image.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert resp.status_code == 201, describe(resp)
    assert resp.headers.get("Docker-Content-Digest") == image.manifest_digest, describe(resp)


def test_push_pull_artifact(
    client: oras.client.OrasClient,
    registry: RegistryProcess,
    api: RegistryAPI,
    repo: str,
    tmp_path: Path,
) -> None:
    files = write_files(tmp_path / "src")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"kind": "berth-e2e"}))
    target = f"{registry.address}/{repo}:v1"

    resp = client.push(
        target=target,
        files=[f"{tmp_path / 'src' / name}:{FILE_TYPE}" for name in files],
        manifest_config=f"{config}:{CONFIG_TYPE}",
        manifest_annotations={"org.opencontainers.image.title": "berth e2e"},
        disable_path_validation=True,
    )
    assert resp.status_code == 201, resp.text
    digest = resp.headers.get("Docker-Content-Digest")
    assert digest and digest == api.manifest_digest(repo, "v1")

    manifest = client.get_manifest(target)
    assert manifest["config"]["mediaType"] == CONFIG_TYPE
    assert manifest["annotations"]["org.opencontainers.image.title"] == "berth e2e"
    title = "org.opencontainers.image.title"
    layers = {layer["annotations"][title]: layer for layer in manifest["layers"]}
    assert set(layers) == set(files)
    for name, data in files.items():
        assert layers[name]["digest"] == sha256_digest(data)
        assert layers[name]["mediaType"] == FILE_TYPE
        assert api.blob_exists(repo, sha256_digest(data))

    pulled = client.pull(target=target, outdir=str(tmp_path / "out"))
    assert {Path(p).name for p in pulled} == set(files)
    for name, data in files.items():
        assert (tmp_path / "out" / name).read_bytes() == data

    # The same artifact by digest, and a second tag.
    assert client.get_manifest(f"{registry.address}/{repo}@{digest}") == manifest
    client.push(
        target=f"{registry.address}/{repo}:v2",
        files=[f"{tmp_path / 'src' / 'notes.txt'}:{FILE_TYPE}"],
        disable_path_validation=True,
    )
    assert sorted(client.get_tags(f"{registry.address}/{repo}")) == ["v1", "v2"]

    assert client.delete_tag(f"{registry.address}/{repo}", "v2")
    assert client.get_tags(f"{registry.address}/{repo}") == ["v1"]


def test_artifact_type_and_referrers(
    client: oras.client.OrasClient,
    registry: RegistryProcess,
    api: RegistryAPI,
    single_layout: ImageLayout,
    repo: str,
    tmp_path: Path,
) -> None:
    subject_image = single_layout.image
    push_image_raw(api, repo, single_layout, "app")
    subject = oras.oci.Subject(
        mediaType=OCI_MANIFEST,
        digest=subject_image.manifest_digest,
        size=subject_image.manifest_size,
    )

    # Referrer 1: the pre-1.1 convention, the artifact type is the config's media type.
    sig = tmp_path / "signature.bin"
    sig.write_bytes(b"not really a signature")
    sig_config = tmp_path / "sig-config.json"
    sig_config.write_text("{}")
    resp = client.push(
        target=f"{registry.address}/{repo}:sig",
        files=[f"{sig}:application/octet-stream"],
        manifest_config=f"{sig_config}:{SIGNATURE_TYPE}",
        subject=subject,
        disable_path_validation=True,
    )
    assert resp.status_code == 201, resp.text
    sig_digest = resp.headers["Docker-Content-Digest"]
    assert resp.headers.get("OCI-Subject") == subject_image.manifest_digest, dict(resp.headers)

    # Referrer 2: OCI 1.1 style, an explicit artifactType and the empty config.
    sbom = tmp_path / "sbom.json"
    sbom.write_text(json.dumps({"packages": ["berth"]}))
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    container = client.get_container(f"{registry.address}/{repo}:sbom")
    empty_desc = {"mediaType": EMPTY_TYPE, "digest": EMPTY_DIGEST, "size": 2}
    sbom_layer = oras.oci.NewLayer(str(sbom), media_type=SBOM_TYPE)
    for path, desc in ((empty, empty_desc), (sbom, sbom_layer)):
        up = client.upload_blob(str(path), container, desc)
        assert up.status_code in (200, 201), up.text
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SBOM_TYPE,
        "config": empty_desc,
        "layers": [sbom_layer],
        "subject": {
            "mediaType": OCI_MANIFEST,
            "digest": subject_image.manifest_digest,
            "size": subject_image.manifest_size,
        },
        "annotations": {"org.berth.test": "sbom"},
    }
    resp = client.upload_manifest(manifest, container)
    assert resp.status_code == 201, resp.text
    sbom_digest = resp.headers["Docker-Content-Digest"]
    assert resp.headers.get("OCI-Subject") == subject_image.manifest_digest, dict(resp.headers)

    url = f"/v2/{repo}/referrers/{subject_image.manifest_digest}"
    resp = api.client.get(url)
    assert resp.status_code == 200, describe(resp)
    assert resp.headers["content-type"].split(";")[0] == OCI_INDEX, describe(resp)
    listing = resp.json()
    assert listing["mediaType"] == OCI_INDEX
    found = {d["digest"]: d for d in listing["manifests"]}
    assert set(found) == {sig_digest, sbom_digest}, describe(resp)
    assert found[sig_digest]["artifactType"] == SIGNATURE_TYPE
    assert found[sbom_digest]["artifactType"] == SBOM_TYPE
    assert found[sbom_digest]["annotations"] == {"org.berth.test": "sbom"}
    for digest, desc in found.items():
        assert desc["mediaType"] == OCI_MANIFEST
        assert desc["size"] == len(api.get_manifest(repo, digest).content)

    filtered = api.client.get(url, params={"artifactType": SBOM_TYPE})
    assert filtered.status_code == 200, describe(filtered)
    assert [d["digest"] for d in filtered.json()["manifests"]] == [sbom_digest]
    assert "artifactType" in filtered.headers.get("OCI-Filters-Applied", ""), describe(filtered)

    # A digest nothing refers to has an empty list, not a 404.
    lonely = api.client.get(f"/v2/{repo}/referrers/{sha256_digest(b'nothing')}")
    assert lonely.status_code == 200, describe(lonely)
    assert lonely.json()["manifests"] == []

    # Deleting a referrer removes it from the list.
    resp = api.delete_manifest(repo, sig_digest)
    assert resp.status_code == 202, describe(resp)
    after = httpx.get(f"{registry.url}{url}", timeout=30)
    assert [d["digest"] for d in after.json()["manifests"]] == [sbom_digest], describe(after)


def test_chunked_upload(
    client: oras.client.OrasClient,
    registry: RegistryProcess,
    api: RegistryAPI,
    repo: str,
    tmp_path: Path,
) -> None:
    """oras-py's PATCH-per-chunk upload with Content-Range, then the closing PUT."""
    big = tmp_path / "big.bin"
    data = b"".join(sha256_digest(str(i).encode()).encode() for i in range(400))  # ~28 KB
    big.write_bytes(data)
    target = f"{registry.address}/{repo}:chunked"
    resp = client.push(
        target=target,
        files=[f"{big}:{FILE_TYPE}"],
        do_chunked=True,
        chunk_size=4096,
        disable_path_validation=True,
    )
    assert resp.status_code == 201, resp.text
    blob = api.client.get(f"/v2/{repo}/blobs/{sha256_digest(data)}")
    assert blob.status_code == 200, describe(blob)
    assert blob.content == data
    client.pull(target=target, outdir=str(tmp_path / "out"))
    assert (tmp_path / "out" / "big.bin").read_bytes() == data
