"""skopeo against the registry: copy OCI layouts in and out, list tags, delete.

skopeo copies manifests byte for byte when no conversion is needed, so every
digest the registry reports must equal the one the image builder computed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.images import MT_INDEX, MT_MANIFEST, ImageLayout, IndexLayout, sha256_digest
from tests.support.processes import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    RegistryAPI,
    RegistryProcess,
    describe,
    run,
    start_registry,
)

pytestmark = pytest.mark.e2e

TLS_OFF = "--tls-verify=false"


def copy(skopeo: str, src: str, dest: str, *extra: str) -> str:
    result = run(
        [skopeo, "copy", "--src-tls-verify=false", "--dest-tls-verify=false", *extra, src, dest],
        timeout=180,
    )
    return result.stdout + result.stderr


def inspect_raw(skopeo: str, ref: str) -> bytes:
    # --raw prints the manifest exactly as served; text mode keeps the bytes intact.
    return run([skopeo, "inspect", TLS_OFF, "--raw", ref], timeout=60).stdout.encode()


def dir_manifest_digest(out: Path) -> str:
    return sha256_digest((out / "manifest.json").read_bytes())


def layout_top_digest(out: Path) -> str:
    index = json.loads((out / "index.json").read_text())
    return str(index["manifests"][0]["digest"])


def test_copy_single_image_and_back(
    skopeo: str,
    registry: RegistryProcess,
    api: RegistryAPI,
    single_layout: ImageLayout,
    repo: str,
    tmp_path: Path,
) -> None:
    image = single_layout.image
    remote = f"docker://{registry.address}/{repo}"
    copy(skopeo, single_layout.skopeo_ref, f"{remote}:v1")

    raw = inspect_raw(skopeo, f"{remote}:v1")
    assert sha256_digest(raw) == image.manifest_digest
    assert api.manifest_digest(repo, "v1") == image.manifest_digest
    info = json.loads(run([skopeo, "inspect", TLS_OFF, f"{remote}:v1"], timeout=60).stdout)
    assert info["Digest"] == image.manifest_digest
    assert info["Layers"] == image.layer_digests
    for digest in image.blob_digests:
        assert api.blob_exists(repo, digest), digest

    # Pull by tag into a fresh OCI layout, then by digest into a dir: both verify blob digests.
    copy(skopeo, f"{remote}:v1", f"oci:{tmp_path / 'by-tag'}:v1")
    assert layout_top_digest(tmp_path / "by-tag") == image.manifest_digest
    copy(skopeo, f"{remote}@{image.manifest_digest}", f"dir:{tmp_path / 'by-digest'}")
    assert dir_manifest_digest(tmp_path / "by-digest") == image.manifest_digest
    for digest in image.blob_digests:
        assert (tmp_path / "by-digest" / digest.split(":", 1)[1]).is_file()


def test_copy_index_all_platforms(
    skopeo: str,
    registry: RegistryProcess,
    api: RegistryAPI,
    index_layout: IndexLayout,
    repo: str,
    tmp_path: Path,
) -> None:
    index = index_layout.index
    remote = f"docker://{registry.address}/{repo}"
    copy(skopeo, index_layout.skopeo_ref, f"{remote}:multi", "--all")

    assert sha256_digest(inspect_raw(skopeo, f"{remote}:multi")) == index.index_digest
    assert api.manifest_digest(repo, "multi") == index.index_digest
    served = api.get_manifest(repo, "multi")
    assert served.headers["content-type"].split(";")[0] == "application/vnd.oci.image.index.v1+json"
    for img in index.images.values():
        assert api.manifest_digest(repo, img.manifest_digest) == img.manifest_digest

    # Round trip of the whole index keeps its digest.
    copy(skopeo, f"{remote}:multi", f"oci:{tmp_path / 'all'}:multi", "--all")
    assert layout_top_digest(tmp_path / "all") == index.index_digest


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_pull_index_by_platform(
    skopeo: str,
    registry: RegistryProcess,
    index_layout: IndexLayout,
    repo: str,
    tmp_path: Path,
    arch: str,
) -> None:
    index = index_layout.index
    remote = f"docker://{registry.address}/{repo}"
    copy(skopeo, index_layout.skopeo_ref, f"{remote}:multi", "--all")
    want = index.images[f"linux/{arch}"]
    other = next(img for key, img in index.images.items() if key != f"linux/{arch}")

    info = json.loads(
        run(
            [
                skopeo,
                "--override-arch",
                arch,
                "--override-os",
                "linux",
                "inspect",
                TLS_OFF,
                f"{remote}:multi",
            ],
            timeout=60,
        ).stdout
    )
    # skopeo reports the digest of what the tag names (the index) and the chosen image's layers.
    assert info["Digest"] == index.index_digest
    assert info["Architecture"] == arch
    assert info["Layers"] == want.layer_digests

    out = tmp_path / arch
    copy(skopeo, f"{remote}:multi", f"dir:{out}", "--override-arch", arch, "--override-os", "linux")
    assert dir_manifest_digest(out) == want.manifest_digest
    present = {p.name for p in out.iterdir()}
    assert {d.split(":", 1)[1] for d in want.layer_digests} <= present
    assert not {d.split(":", 1)[1] for d in other.layer_digests} & present


def test_list_tags(
    skopeo: str,
    registry: RegistryProcess,
    api: RegistryAPI,
    single_layout: ImageLayout,
    repo: str,
) -> None:
    remote = f"docker://{registry.address}/{repo}"
    tags = ["v1", "v1.0", "latest", "a-tag_with.chars"]
    copy(skopeo, single_layout.skopeo_ref, f"{remote}:{tags[0]}")
    for tag in tags[1:]:
        # Registry-to-registry copy: the blobs exist, only the manifest is put again.
        copy(skopeo, f"{remote}:{tags[0]}", f"{remote}:{tag}")

    listed = json.loads(run([skopeo, "list-tags", TLS_OFF, remote], timeout=60).stdout)
    assert sorted(listed["Tags"]) == sorted(tags)
    assert sorted(api.tags(repo)) == sorted(tags)
    for tag in tags:
        assert api.manifest_digest(repo, tag) == single_layout.digest


def test_delete_manifest(
    skopeo: str,
    registry: RegistryProcess,
    api: RegistryAPI,
    single_layout: ImageLayout,
    repo: str,
) -> None:
    remote = f"docker://{registry.address}/{repo}"
    digest = single_layout.digest
    copy(skopeo, single_layout.skopeo_ref, f"{remote}:v1")
    copy(skopeo, f"{remote}:v1", f"{remote}:v2")

    # skopeo resolves the tag and deletes the manifest by digest: every tag on it goes.
    run([skopeo, "delete", TLS_OFF, f"{remote}:v1"], timeout=60)
    for ref in (digest, "v1", "v2"):
        resp = api.get_manifest(repo, ref)
        assert resp.status_code == 404, describe(resp)
        assert resp.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN", describe(resp)
    failed = run([skopeo, "inspect", TLS_OFF, f"{remote}:v1"], timeout=60, check=False)
    assert failed.returncode != 0, failed.stdout

    # Pushing again works after a delete.
    copy(skopeo, single_layout.skopeo_ref, f"{remote}:v1")
    assert api.manifest_digest(repo, "v1") == digest


def test_delete_tag_keeps_manifest(
    skopeo: str,
    registry: RegistryProcess,
    api: RegistryAPI,
    single_layout: ImageLayout,
    repo: str,
) -> None:
    remote = f"docker://{registry.address}/{repo}"
    copy(skopeo, single_layout.skopeo_ref, f"{remote}:keep")
    copy(skopeo, f"{remote}:keep", f"{remote}:drop")

    # The spec lets a registry refuse this (400/405); Berth supports it.
    resp = api.delete_manifest(repo, "drop")
    assert resp.status_code == 202, describe(resp)
    assert api.tags(repo) == ["keep"]
    assert api.get_manifest(repo, "drop").status_code == 404
    assert api.manifest_digest(repo, single_layout.digest) == single_layout.digest


def test_delete_blob(
    skopeo: str,
    registry: RegistryProcess,
    api: RegistryAPI,
    single_layout: ImageLayout,
    repo: str,
) -> None:
    remote = f"docker://{registry.address}/{repo}"
    copy(skopeo, single_layout.skopeo_ref, f"{remote}:v1")
    layer = single_layout.image.layer_digests[0]
    resp = api.client.delete(f"/v2/{repo}/blobs/{layer}")
    assert resp.status_code == 202, describe(resp)
    assert not api.blob_exists(repo, layer)
    resp = api.client.get(f"/v2/{repo}/blobs/{layer}")
    assert resp.status_code == 404, describe(resp)
    assert resp.json()["errors"][0]["code"] == "BLOB_UNKNOWN", describe(resp)


def test_tag_list_pagination(
    skopeo: str,
    registry: RegistryProcess,
    api: RegistryAPI,
    single_layout: ImageLayout,
    repo: str,
) -> None:
    remote = f"docker://{registry.address}/{repo}"
    tags = [f"t{i}" for i in range(5)]
    copy(skopeo, single_layout.skopeo_ref, f"{remote}:{tags[0]}")
    for tag in tags[1:]:
        copy(skopeo, f"{remote}:{tags[0]}", f"{remote}:{tag}")

    # Walk the list two at a time through the Link headers, as the spec describes.
    seen: list[str] = []
    url: str | None = f"/v2/{repo}/tags/list?n=2"
    while url:
        resp = api.client.get(url)
        assert resp.status_code == 200, describe(resp)
        page = resp.json()["tags"]
        assert len(page) <= 2, describe(resp)
        seen += page
        link = resp.links.get("next")
        url = link["url"] if link else None
        assert len(seen) <= len(tags), f"pagination does not end: {seen}"
    assert seen == sorted(tags)

    catalog = api.client.get("/v2/_catalog")
    assert catalog.status_code == 200, describe(catalog)
    assert repo in catalog.json()["repositories"], describe(catalog)


def test_docker_format_conversion(
    skopeo: str,
    registry: RegistryProcess,
    api: RegistryAPI,
    index_layout: IndexLayout,
    repo: str,
    tmp_path: Path,
) -> None:
    # skopeo rewrites the index and manifests as Docker schema 2: new manifest digests,
    # same config and layer blobs.
    remote = f"docker://{registry.address}/{repo}"
    copy(skopeo, index_layout.skopeo_ref, f"{remote}:docker", "--all", "--format", "v2s2")
    served = api.get_manifest(repo, "docker")
    assert served.status_code == 200, describe(served)
    assert served.headers["content-type"].split(";")[0] == DOCKER_LIST, describe(served)
    listing = served.json()
    assert listing["mediaType"] == DOCKER_LIST
    by_arch = {m["platform"]["architecture"]: m for m in listing["manifests"]}
    for platform, img in index_layout.index.images.items():
        entry = by_arch[img.architecture]
        assert entry["mediaType"] == DOCKER_MANIFEST, platform
        child = api.get_manifest(repo, entry["digest"])
        assert child.status_code == 200, describe(child)
        assert child.headers["content-type"].split(";")[0] == DOCKER_MANIFEST
        body = child.json()
        assert body["config"]["digest"] == img.config_digest
        assert [layer["digest"] for layer in body["layers"]] == img.layer_digests

    # A client that only takes OCI types cannot be given a Docker list.
    oci_only = api.get_manifest(repo, "docker", accept=(MT_INDEX, MT_MANIFEST))
    assert oci_only.status_code in (404, 406), describe(oci_only)

    out = tmp_path / "arm64"
    copy(skopeo, f"{remote}:docker", f"dir:{out}", "--override-arch", "arm64")
    arm = index_layout.index.images["linux/arm64"]
    assert json.loads((out / "manifest.json").read_text())["config"]["digest"] == arm.config_digest


@pytest.fixture(scope="module")
def multiworker_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    reg = start_registry(
        tmp_path_factory.mktemp("berth-2workers"), extra_env={"BERTH_SERVER__WORKERS": "2"}
    )
    yield reg
    reg.stop()


@pytest.mark.parametrize("which", ["registry", "multiworker_registry"])
def test_concurrent_pushes_share_blobs(
    skopeo: str,
    index_layout: IndexLayout,
    repo: str,
    request: pytest.FixtureRequest,
    which: str,
) -> None:
    """Several clients push the same blobs at once, to different repositories and to one."""
    if which == "multiworker_registry" and os.environ.get("E2E_REGISTRY_URL"):
        pytest.skip("runs its own registry; not applicable to an external one")
    reg: RegistryProcess = request.getfixturevalue(which)
    remote = f"docker://{reg.address}"
    targets = [f"{remote}/{repo}-{i}:multi" for i in range(4)]
    targets += [f"{remote}/{repo}-same:tag{i}" for i in range(3)]
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        futures = [
            pool.submit(copy, skopeo, index_layout.skopeo_ref, target, "--all")
            for target in targets
        ]
        errors = []
        for future in futures:
            try:
                future.result()
            except AssertionError as exc:
                errors.append(str(exc))
    assert not errors, "\n\n".join(errors) + f"\n\nregistry log:\n{reg.log_tail(80)}"

    api = RegistryAPI(reg)
    try:
        for target in targets:
            name, tag = target.removeprefix(f"{remote}/").rsplit(":", 1)
            assert api.manifest_digest(name, tag) == index_layout.digest
            for img in index_layout.index.images.values():
                for digest in img.blob_digests:
                    assert api.blob_exists(name, digest), f"{name} {digest}"
                blob = api.client.get(f"/v2/{name}/blobs/{img.layer_digests[0]}")
                assert sha256_digest(blob.content) == img.layer_digests[0], describe(blob)
        assert sorted(api.tags(f"{repo}-same")) == ["tag0", "tag1", "tag2"]
    finally:
        api.close()


def test_data_survives_restart(
    skopeo: str,
    single_layout: ImageLayout,
    index_layout: IndexLayout,
    repo: str,
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    reg = start_registry(data_dir)
    try:
        copy(skopeo, single_layout.skopeo_ref, f"docker://{reg.address}/{repo}:one")
        copy(skopeo, index_layout.skopeo_ref, f"docker://{reg.address}/{repo}:multi", "--all")
    finally:
        reg.stop()

    reg = start_registry(data_dir)
    api = RegistryAPI(reg)
    try:
        assert api.manifest_digest(repo, "one") == single_layout.digest
        assert api.manifest_digest(repo, "multi") == index_layout.digest
        copy(skopeo, f"docker://{reg.address}/{repo}:multi", f"oci:{tmp_path / 'out'}:m", "--all")
        assert layout_top_digest(tmp_path / "out") == index_layout.digest
    finally:
        api.close()
        reg.stop()
