"""The docker CLI and a private dockerd against the registry with token auth.

Each test has its own client config directory (DOCKER_CONFIG), so a login in one test is not
seen by another; the daemon is shared. ``docker login`` stores the refresh token the registry
hands out (``offline_token=true``), and later pushes and pulls trade it for access tokens.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.images import write_rootfs_tar
from tests.support.processes import (
    DOCKER_LIST,
    Account,
    AuthAccounts,
    DockerdProcess,
    RegistryAPI,
    RegistryProcess,
    run,
)

pytestmark = pytest.mark.e2e

PUSH_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64}) size: (\d+)")
REFUSED = re.compile(r"unauthorized|denied|authentication required", re.IGNORECASE)


class DockerClient:
    """The docker CLI with a config directory of its own, against the shared dockerd."""

    def __init__(self, dockerd: DockerdProcess, config_dir: Path) -> None:
        self.dockerd = dockerd
        self.config_dir = config_dir
        config_dir.mkdir(parents=True, exist_ok=True)

    def __call__(
        self, *args: str | Path, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {"DOCKER_HOST": self.dockerd.host, "DOCKER_CONFIG": str(self.config_dir)}
        return run([self.dockerd.docker_bin, *args], env=env, check=check, input=input, timeout=180)

    def refused(self, *args: str | Path) -> str:
        result = self(*args, check=False)
        assert result.returncode != 0, f"expected a refusal, got success:\n{result.stdout}"
        assert REFUSED.search(result.stderr), result.stderr
        return result.stderr

    def login(self, address: str, account: Account, check: bool = True) -> str:
        result = self(
            "login", address, "--username", account.username, "--password-stdin",
            input=account.password + "\n", check=check,
        )  # fmt: skip
        return result.stdout + result.stderr

    def stored_auths(self) -> dict[str, dict[str, str]]:
        path = self.config_dir / "config.json"
        return json.loads(path.read_text()).get("auths", {}) if path.exists() else {}

    def import_image(self, tarball: Path, ref: str) -> str:
        out = self("import", "--change", 'CMD ["/bin/sh", "/app/hello.sh"]', tarball, ref)
        return out.stdout.strip().splitlines()[-1]

    def image_id(self, ref: str) -> str:
        return self("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()

    def push(self, ref: str) -> str:
        out = self("push", ref).stdout
        match = PUSH_DIGEST.search(out)
        assert match, f"no digest in docker push output:\n{out}"
        return match.group(1)


@pytest.fixture
def docker(auth_dockerd: DockerdProcess, tmp_path: Path) -> DockerClient:
    return DockerClient(auth_dockerd, tmp_path / "docker-config")


def test_login_push_pull_logout(
    docker: DockerClient,
    auth_registry: RegistryProcess,
    auth_accounts: AuthAccounts,
    auth_api: RegistryAPI,
    auth_repo: str,
    tmp_path: Path,
) -> None:
    address = auth_registry.address
    writer = auth_accounts.writer
    repo = f"{auth_accounts.tenant}/{auth_repo}"
    name = f"{address}/{repo}"
    image_id = docker.import_image(
        write_rootfs_tar(tmp_path / "rootfs.tar", seed=repo), f"{name}:v1"
    )

    # Not logged in: the push is refused before anything is stored.
    docker.refused("push", f"{name}:v1")

    out = docker.login(address, Account(writer.username, "wrong"), check=False)
    assert REFUSED.search(out) or "invalid username" in out.lower(), out
    assert address not in docker.stored_auths()
    out = docker.login(address, writer)
    assert "Login Succeeded" in out, out
    assert address in docker.stored_auths()

    digest = docker.push(f"{name}:v1")
    assert auth_api.manifest_digest(repo, "v1") == digest
    assert auth_api.get_manifest(repo, digest).json()["config"]["digest"] == image_id

    docker("rmi", f"{name}:v1")
    assert docker("image", "inspect", image_id, check=False).returncode != 0
    docker("pull", f"{name}:v1")
    assert docker.image_id(f"{name}:v1") == image_id
    docker("rmi", f"{name}:v1")
    docker("pull", f"{name}@{digest}")
    assert docker.image_id(f"{name}@{digest}") == image_id
    docker("rmi", f"{name}@{digest}")

    docker("logout", address)
    assert address not in docker.stored_auths()
    docker.refused("pull", f"{name}:v1")


def test_reader_pulls_but_cannot_push(
    docker: DockerClient,
    auth_registry: RegistryProcess,
    auth_accounts: AuthAccounts,
    auth_api: RegistryAPI,
    auth_repo: str,
    tmp_path: Path,
) -> None:
    address = auth_registry.address
    repo = f"{auth_accounts.tenant}/{auth_repo}"
    name = f"{address}/{repo}"
    image_id = docker.import_image(
        write_rootfs_tar(tmp_path / "rootfs.tar", seed=repo), f"{name}:v1"
    )
    docker.login(address, auth_accounts.writer)
    digest = docker.push(f"{name}:v1")

    docker.login(address, auth_accounts.reader)  # replaces the writer's stored login
    docker("tag", f"{name}:v1", f"{name}:by-reader")
    docker.refused("push", f"{name}:by-reader")
    assert auth_api.tags(repo) == ["v1"]

    docker("rmi", f"{name}:v1", f"{name}:by-reader")
    docker("pull", f"{name}@{digest}")
    assert docker.image_id(f"{name}@{digest}") == image_id
    docker("rmi", f"{name}@{digest}")

    # A writer of another tenant sees nothing here, and cannot push here either.
    docker.login(address, auth_accounts.outsider)
    docker.refused("pull", f"{name}:v1")


def test_manifest_list_two_platforms(
    docker: DockerClient,
    auth_registry: RegistryProcess,
    auth_accounts: AuthAccounts,
    auth_api: RegistryAPI,
    auth_repo: str,
    tmp_path: Path,
) -> None:
    address = auth_registry.address
    repo = f"{auth_accounts.tenant}/{auth_repo}"
    name = f"{address}/{repo}"
    docker.login(address, auth_accounts.writer)
    ids: dict[str, str] = {}
    digests: dict[str, str] = {}
    for arch in ("amd64", "arm64"):
        rootfs = write_rootfs_tar(tmp_path / f"{arch}.tar", seed=f"{arch}-{repo}")
        ids[arch] = docker.import_image(rootfs, f"{name}:{arch}")
        digests[arch] = docker.push(f"{name}:{arch}")

    listed = f"{name}:multi"
    docker(
        "manifest", "create", "--insecure", listed,
        "--amend", f"{name}:amd64", "--amend", f"{name}:arm64",
    )  # fmt: skip
    docker("manifest", "annotate", "--os", "linux", "--arch", "arm64", listed, f"{name}:arm64")
    out = docker("manifest", "push", "--insecure", listed).stdout
    list_digest = out.strip().splitlines()[-1].strip()
    assert list_digest.startswith("sha256:"), out
    assert auth_api.manifest_digest(repo, "multi") == list_digest
    served = auth_api.get_manifest(repo, "multi")
    assert served.headers["content-type"].split(";")[0] == DOCKER_LIST
    entries = {m["platform"]["architecture"]: m["digest"] for m in served.json()["manifests"]}
    assert entries == digests

    docker("rmi", f"{name}:amd64", f"{name}:arm64")
    # Pulled by a reader, by platform: each platform's own image.
    docker.login(address, auth_accounts.reader)
    for arch in ("arm64", "amd64"):
        docker("pull", "--platform", f"linux/{arch}", listed)
        assert docker.image_id(listed) == ids[arch], f"pull --platform linux/{arch}"
        docker("rmi", listed)

    # A reader may build a list from what it can pull, but not push it.
    by_reader = f"{name}:by-reader"
    docker(
        "manifest", "create", "--insecure", by_reader,
        "--amend", f"{name}:amd64", "--amend", f"{name}:arm64",
    )  # fmt: skip
    docker.refused("manifest", "push", "--insecure", by_reader)
    assert "by-reader" not in auth_api.tags(repo)
    docker("logout", address)
    docker.refused("pull", "--platform", "linux/amd64", listed)


def test_no_mount_across_tenants(
    docker: DockerClient,
    auth_registry: RegistryProcess,
    auth_accounts: AuthAccounts,
    auth_api: RegistryAPI,
    auth_repo: str,
    tmp_path: Path,
) -> None:
    """dockerd remembers where it pushed a layer and asks to mount it from there; a writer of
    another tenant, who may not pull the source, must get an upload instead, never the blob."""
    address = auth_registry.address
    source = f"{auth_accounts.tenant}/{auth_repo}"
    target = f"{auth_accounts.other_tenant}/{auth_repo}"
    rootfs = write_rootfs_tar(tmp_path / "rootfs.tar", seed=source)
    image_id = docker.import_image(rootfs, f"{address}/{source}:v1")
    docker.login(address, auth_accounts.writer)
    docker.push(f"{address}/{source}:v1")
    # Within a tenant, the mount is used.
    docker("tag", f"{address}/{source}:v1", f"{address}/{source}-copy:v1")
    out = docker("push", f"{address}/{source}-copy:v1").stdout
    assert f"Mounted from {source}" in out, out

    docker.login(address, auth_accounts.outsider)
    docker("tag", f"{address}/{source}:v1", f"{address}/{target}:v1")
    out = docker("push", f"{address}/{target}:v1").stdout
    assert "Mounted from" not in out, out
    digest = PUSH_DIGEST.search(out)
    assert digest, out
    layer = auth_api.get_manifest(target, digest.group(1)).json()["layers"][0]["digest"]
    assert auth_api.blob_exists(target, layer)
    assert auth_api.blob_exists(target, image_id)
    docker("rmi", f"{address}/{source}:v1", f"{address}/{source}-copy:v1", f"{address}/{target}:v1")
