"""containerd's ``ctr`` against the registry: push, pull by tag, digest and platform.

Images enter containerd with ``ctr images import`` of an OCI layout tarball, so
the digests are the builder's. ``ctr images pull`` unpacks what it fetched, which
also checks every layer against the config's diff_ids. Removing an image lets
containerd's garbage collector drop its content, so a later pull has to fetch
from the registry again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.images import ImageLayout, IndexLayout, tar_layout
from tests.support.processes import (
    ContainerdProcess,
    RegistryAPI,
    RegistryProcess,
    run,
    wait_until,
)

pytestmark = pytest.mark.e2e


def images(ctd: ContainerdProcess) -> dict[str, str]:
    """Image name -> target digest, from ``ctr images ls``."""
    out = ctd.ctr("images", "ls").stdout.splitlines()[1:]
    return {cols[0]: cols[2] for cols in (line.split() for line in out) if len(cols) >= 3}


def content(ctd: ContainerdProcess) -> set[str]:
    out = ctd.ctr("content", "ls", "-q").stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def remove_image(ctd: ContainerdProcess, ref: str, digests: list[str]) -> None:
    """Remove ``ref`` and wait until garbage collection has dropped its content."""
    ctd.ctr("images", "rm", "--sync", ref)
    wait_until(
        lambda: not (set(digests) & content(ctd)),
        timeout=30,
        message=f"containerd to drop the content of {ref}",
    )


def test_push_pull_single_image(
    containerd: ContainerdProcess,
    registry: RegistryProcess,
    api: RegistryAPI,
    single_layout: ImageLayout,
    repo: str,
    tmp_path: Path,
) -> None:
    image = single_layout.image
    name = f"{registry.address}/{repo}"
    ref = f"{name}:{single_layout.tag}"
    archive = tar_layout(single_layout.path, tmp_path / "single.tar", image_name=ref)
    containerd.ctr("images", "import", archive)
    assert images(containerd)[ref] == image.manifest_digest

    containerd.ctr("images", "push", "--plain-http", ref)
    assert api.manifest_digest(repo, single_layout.tag) == image.manifest_digest
    for digest in image.blob_digests:
        assert api.blob_exists(repo, digest), digest

    remove_image(containerd, ref, image.blob_digests)
    containerd.ctr("images", "pull", "--plain-http", ref)
    assert images(containerd)[ref] == image.manifest_digest
    assert set(image.blob_digests) <= content(containerd)

    by_digest = f"{name}@{image.manifest_digest}"
    remove_image(containerd, ref, image.blob_digests)
    containerd.ctr("images", "pull", "--plain-http", by_digest)
    assert images(containerd)[by_digest] == image.manifest_digest
    assert set(image.blob_digests) <= content(containerd)
    containerd.ctr("images", "rm", "--sync", by_digest)


def test_push_index_pull_by_platform(
    containerd: ContainerdProcess,
    registry: RegistryProcess,
    api: RegistryAPI,
    index_layout: IndexLayout,
    repo: str,
    tmp_path: Path,
) -> None:
    index = index_layout.index
    ref = f"{registry.address}/{repo}:{index_layout.tag}"
    all_blobs = [
        d for img in index.images.values() for d in [img.manifest_digest, *img.blob_digests]
    ]
    archive = tar_layout(index_layout.path, tmp_path / "index.tar", image_name=ref)
    # Without --all-platforms ctr would import only the host platform's content.
    containerd.ctr("images", "import", "--all-platforms", archive)
    assert images(containerd)[ref] == index.index_digest

    containerd.ctr("images", "push", "--plain-http", ref)
    assert api.manifest_digest(repo, index_layout.tag) == index.index_digest
    for img in index.images.values():
        assert api.manifest_digest(repo, img.manifest_digest) == img.manifest_digest
        for digest in img.blob_digests:
            assert api.blob_exists(repo, digest), f"{img.platform} {digest}"

    for platform, img in index.images.items():
        remove_image(containerd, ref, all_blobs)
        containerd.ctr("images", "pull", "--plain-http", "--platform", platform, ref)
        assert images(containerd)[ref] == index.index_digest
        have = content(containerd)
        assert set(img.blob_digests) <= have, platform
        others = [o for p, o in index.images.items() if p != platform]
        for other in others:
            assert not set(other.layer_digests) & have, f"pulled {other.platform} layers too"

    remove_image(containerd, ref, all_blobs)
    containerd.ctr("images", "pull", "--plain-http", "--all-platforms", ref)
    assert set(all_blobs) <= content(containerd)
    containerd.ctr("images", "rm", "--sync", ref)


def test_pull_docker_list_by_platform(
    containerd: ContainerdProcess,
    skopeo: str,
    registry: RegistryProcess,
    api: RegistryAPI,
    index_layout: IndexLayout,
    repo: str,
) -> None:
    """containerd pulls a Docker manifest list (skopeo converts the index) by platform."""
    ref = f"{registry.address}/{repo}:docker"
    run(
        [skopeo, "copy", "--all", "--format", "v2s2", "--dest-tls-verify=false",
         index_layout.skopeo_ref, f"docker://{ref}"],
        timeout=180,
    )  # fmt: skip
    list_digest = api.manifest_digest(repo, "docker")
    arm = index_layout.index.images["linux/arm64"]
    amd = index_layout.index.images["linux/amd64"]
    containerd.ctr("images", "pull", "--plain-http", "--platform", "linux/arm64", ref)
    assert images(containerd)[ref] == list_digest
    have = content(containerd)
    assert set(arm.blob_digests) <= have
    assert not set(amd.layer_digests) & have
    remove_image(containerd, ref, arm.blob_digests)
