"""The docker CLI and a private dockerd against the registry.

dockerd (Debian's 20.10) stores images in Docker's own format, so pushes produce
Docker schema 2 manifests whose layer digests Docker computes itself; what must
survive a round trip is the image ID, which is the config digest. Images come
from ``docker import`` of a rootfs tarball, or ``docker load`` of an archive made
by the image builder. The registry is on 127.0.0.1, which dockerd treats as
insecure (plain HTTP) by default; it is also passed as ``--insecure-registry``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.images import IndexLayout, write_docker_archive, write_rootfs_tar
from tests.support.processes import (
    DOCKER_LIST,
    DockerdProcess,
    RegistryAPI,
    RegistryProcess,
    run,
)

pytestmark = pytest.mark.e2e

PUSH_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64}) size: (\d+)")


def docker_import(dockerd: DockerdProcess, tarball: Path, ref: str) -> str:
    """``docker import`` a rootfs as ``ref``; returns the image ID."""
    out = dockerd.docker("import", "--change", 'CMD ["/bin/sh", "/app/hello.sh"]', tarball, ref)
    return out.stdout.strip().splitlines()[-1]


def image_id(dockerd: DockerdProcess, ref: str) -> str:
    return dockerd.docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def push(dockerd: DockerdProcess, ref: str) -> str:
    """``docker push``; returns the manifest digest Docker reports."""
    out = dockerd.docker("push", ref).stdout
    match = PUSH_DIGEST.search(out)
    assert match, f"no digest in docker push output:\n{out}"
    return match.group(1)


def gone(dockerd: DockerdProcess, ref: str) -> bool:
    return dockerd.docker("image", "inspect", ref, check=False).returncode != 0


def test_import_push_pull(
    dockerd: DockerdProcess,
    registry: RegistryProcess,
    api: RegistryAPI,
    repo: str,
    tmp_path: Path,
) -> None:
    name = f"{registry.address}/{repo}"
    rootfs = write_rootfs_tar(tmp_path / "rootfs.tar", seed=f"docker-{repo}")
    original_id = docker_import(dockerd, rootfs, f"{name}:v1")
    dockerd.docker("tag", f"{name}:v1", f"{name}:v1.0")

    digest = push(dockerd, f"{name}:v1")
    assert push(dockerd, f"{name}:v1.0") == digest
    assert api.manifest_digest(repo, "v1") == digest
    assert sorted(api.tags(repo)) == ["v1", "v1.0"]
    manifest = api.get_manifest(repo, digest).json()
    assert manifest["config"]["digest"] == original_id
    assert api.blob_exists(repo, original_id)

    dockerd.docker("rmi", f"{name}:v1", f"{name}:v1.0")
    assert gone(dockerd, original_id)

    dockerd.docker("pull", f"{name}:v1")
    assert image_id(dockerd, f"{name}:v1") == original_id
    repo_digests = json.loads(
        dockerd.docker("image", "inspect", "--format", "{{json .RepoDigests}}", f"{name}:v1").stdout
    )
    assert f"{name}@{digest}" in repo_digests

    dockerd.docker("rmi", f"{name}:v1")
    dockerd.docker("pull", f"{name}@{digest}")
    assert image_id(dockerd, f"{name}@{digest}") == original_id
    dockerd.docker("rmi", f"{name}@{digest}")


def test_load_push_pull_keeps_config(
    dockerd: DockerdProcess,
    registry: RegistryProcess,
    api: RegistryAPI,
    index_layout: IndexLayout,
    repo: str,
    tmp_path: Path,
) -> None:
    # An arm64 image from the builder: the platform lives in its config, not in a list.
    image = index_layout.index.images["linux/arm64"]
    ref = f"{registry.address}/{repo}:arm64"
    archive = write_docker_archive(index_layout.path, image, tmp_path / "arm64.tar", [ref])
    dockerd.docker("load", "--input", archive)
    assert image_id(dockerd, ref) == image.config_digest

    digest = push(dockerd, ref)
    manifest = api.get_manifest(repo, digest).json()
    assert manifest["config"]["digest"] == image.config_digest
    assert len(manifest["layers"]) == len(image.layers)

    dockerd.docker("rmi", ref)
    dockerd.docker("pull", "--platform", "linux/arm64", ref)
    assert image_id(dockerd, ref) == image.config_digest
    arch = dockerd.docker("image", "inspect", "--format", "{{.Architecture}}", ref).stdout
    assert arch.strip() == "arm64"
    dockerd.docker("rmi", ref)


def test_manifest_list_two_platforms(
    dockerd: DockerdProcess,
    registry: RegistryProcess,
    api: RegistryAPI,
    repo: str,
    tmp_path: Path,
) -> None:
    name = f"{registry.address}/{repo}"
    ids: dict[str, str] = {}
    digests: dict[str, str] = {}
    for arch in ("amd64", "arm64"):
        # Different seeds: each platform gets its own layer.
        rootfs = write_rootfs_tar(tmp_path / f"{arch}.tar", seed=f"docker-{arch}-{repo}")
        ids[arch] = docker_import(dockerd, rootfs, f"{name}:{arch}")
        digests[arch] = push(dockerd, f"{name}:{arch}")
    assert ids["amd64"] != ids["arm64"]

    listed = f"{name}:multi"
    dockerd.docker(
        "manifest", "create", "--insecure", listed,
        "--amend", f"{name}:amd64", "--amend", f"{name}:arm64",
    )  # fmt: skip
    dockerd.docker(
        "manifest", "annotate", "--os", "linux", "--arch", "arm64", listed, f"{name}:arm64"
    )
    out = dockerd.docker("manifest", "push", "--insecure", listed).stdout
    list_digest = out.strip().splitlines()[-1].strip()
    assert list_digest.startswith("sha256:"), out

    assert api.manifest_digest(repo, "multi") == list_digest
    served = api.get_manifest(repo, "multi")
    assert served.headers["content-type"].split(";")[0] == DOCKER_LIST
    entries = {m["platform"]["architecture"]: m["digest"] for m in served.json()["manifests"]}
    assert entries == digests

    inspected = json.loads(dockerd.docker("manifest", "inspect", "--insecure", listed).stdout)
    assert {m["digest"] for m in inspected["manifests"]} == set(digests.values())

    dockerd.docker("rmi", f"{name}:amd64", f"{name}:arm64")
    for arch in ("arm64", "amd64"):
        dockerd.docker("pull", "--platform", f"linux/{arch}", listed)
        assert image_id(dockerd, listed) == ids[arch], f"pull --platform linux/{arch}"
        dockerd.docker("rmi", listed)
    dockerd.docker("pull", f"{name}@{list_digest}", check=True)
    dockerd.docker("rmi", f"{name}@{list_digest}")


def test_pull_oci_index_pushed_by_skopeo(
    dockerd: DockerdProcess,
    skopeo: str,
    registry: RegistryProcess,
    api: RegistryAPI,
    index_layout: IndexLayout,
    repo: str,
) -> None:
    """Docker pulls an OCI index it did not push, by platform, down to the right config."""
    name = f"{registry.address}/{repo}"
    run(
        [skopeo, "copy", "--all", "--dest-tls-verify=false", index_layout.skopeo_ref,
         f"docker://{name}:oci"],
        timeout=180,
    )  # fmt: skip
    assert api.manifest_digest(repo, "oci") == index_layout.digest
    for platform, img in index_layout.index.images.items():
        dockerd.docker("pull", "--platform", platform, f"{name}:oci")
        assert image_id(dockerd, f"{name}:oci") == img.config_digest, platform
        dockerd.docker("rmi", f"{name}:oci")
    dockerd.docker("pull", "--platform", "linux/arm64", f"{name}@{index_layout.digest}")
    arm = index_layout.index.images["linux/arm64"]
    assert image_id(dockerd, f"{name}@{index_layout.digest}") == arm.config_digest
    dockerd.docker("rmi", f"{name}@{index_layout.digest}")


def test_cross_repository_mount(
    dockerd: DockerdProcess,
    registry: RegistryProcess,
    api: RegistryAPI,
    repo: str,
    tmp_path: Path,
) -> None:
    """Docker mounts a layer it pushed to one repository into another instead of uploading."""
    first, second = f"{registry.address}/{repo}-a", f"{registry.address}/{repo}-b"
    rootfs = write_rootfs_tar(tmp_path / "rootfs.tar", seed=f"mount-{repo}")
    config_digest = docker_import(dockerd, rootfs, f"{first}:v1")
    digest = push(dockerd, f"{first}:v1")
    dockerd.docker("tag", f"{first}:v1", f"{second}:v1")
    out = dockerd.docker("push", f"{second}:v1").stdout
    assert f"Mounted from {repo}-a" in out, out
    assert api.manifest_digest(f"{repo}-b", "v1") == digest
    layer = api.get_manifest(f"{repo}-b", digest).json()["layers"][0]["digest"]
    assert api.blob_exists(f"{repo}-b", layer)
    assert api.blob_exists(f"{repo}-b", config_digest)
    dockerd.docker("rmi", f"{first}:v1", f"{second}:v1")


def test_big_layer_round_trip(
    dockerd: DockerdProcess,
    registry: RegistryProcess,
    api: RegistryAPI,
    repo: str,
    tmp_path: Path,
) -> None:
    """A 24 MiB incompressible layer: Docker streams it in one PATCH without Content-Range."""
    name = f"{registry.address}/{repo}:big"
    rootfs = write_rootfs_tar(tmp_path / "big.tar", seed=f"big-{repo}", random_bytes=24 << 20)
    original_id = docker_import(dockerd, rootfs, name)
    digest = push(dockerd, name)
    layer = api.get_manifest(repo, digest).json()["layers"][0]
    assert layer["size"] > 24 << 20
    head = api.client.head(f"/v2/{repo}/blobs/{layer['digest']}")
    assert head.status_code == 200, head
    assert int(head.headers["content-length"]) == layer["size"]
    dockerd.docker("rmi", name)
    dockerd.docker("pull", name)
    assert image_id(dockerd, name) == original_id
    dockerd.docker("rmi", name)
