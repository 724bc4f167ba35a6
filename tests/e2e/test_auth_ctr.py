"""containerd's ``ctr`` with ``--user``: robots pull and push, wrong credentials are refused.

The robots' credentials are what an operator hands a node or a CI job: the pull robot's come
from the Kubernetes Secret the CLI printed, the pull+push robot's from ``robot create --json``.
Each test works in a containerd namespace of its own, so images other tests left behind (they
share layers: every test uses the same built image) cannot keep its content alive.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cri import credentials_from_secret
from tests.support.images import ImageLayout, tar_layout
from tests.support.processes import (
    Account,
    AuthAccounts,
    ContainerdProcess,
    RegistryAPI,
    RegistryProcess,
    wait_until,
)

pytestmark = pytest.mark.e2e

REFUSED = re.compile(r"401|403|unauthorized|denied|authorization", re.IGNORECASE)


class Ctr:
    """``ctr -n NAMESPACE ...`` against the shared containerd."""

    def __init__(self, ctd: ContainerdProcess) -> None:
        self.ctd = ctd
        self.namespace = f"auth-{uuid.uuid4().hex[:8]}"

    def __call__(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.ctd.ctr("--namespace", self.namespace, *args, check=check)

    def images(self) -> dict[str, str]:
        out = self("images", "ls").stdout.splitlines()[1:]
        return {cols[0]: cols[2] for cols in (line.split() for line in out) if len(cols) >= 3}

    def remove_image(self, ref: str, digests: list[str]) -> None:
        self("images", "rm", "--sync", ref)

        def dropped() -> bool:
            return not set(digests) & set(self("content", "ls", "-q").stdout.split())

        wait_until(dropped, timeout=30, message=f"containerd to drop the content of {ref}")

    def refused(self, *args: str) -> str:
        result = self(*args, check=False)
        assert result.returncode != 0, f"expected a refusal, got success:\n{result.stdout}"
        assert REFUSED.search(result.stderr), result.stderr
        return result.stderr


@pytest.fixture
def ctr(cri_containerd: ContainerdProcess) -> Ctr:
    return Ctr(cri_containerd)


def test_pull_with_robot_user(
    ctr: Ctr,
    auth_registry: RegistryProcess,
    auth_accounts: AuthAccounts,
    seed_image: Callable[..., None],
    single_layout: ImageLayout,
    auth_repo: str,
) -> None:
    repo = f"{auth_accounts.tenant}/{auth_repo}"
    ref = f"{auth_registry.address}/{repo}:v1"
    seed_image(single_layout.skopeo_ref, f"{repo}:v1", auth_accounts.writer)
    robot = Account(
        *credentials_from_secret(auth_accounts.puller_secret_yaml, auth_registry.address)
    )

    for wrong in (
        Account(robot.username, "wrong"),
        Account("acme+nobody", robot.password),
        auth_accounts.foreign_puller,
    ):
        ctr.refused("images", "pull", "--plain-http", "--user", wrong.creds, ref)
    ctr.refused("images", "pull", "--plain-http", ref)
    assert ref not in ctr.images()

    ctr("images", "pull", "--plain-http", "--user", robot.creds, ref)
    assert ctr.images()[ref] == single_layout.digest
    ctr.remove_image(ref, single_layout.image.blob_digests)


def test_push_with_robot_user(
    ctr: Ctr,
    auth_registry: RegistryProcess,
    auth_accounts: AuthAccounts,
    auth_api: RegistryAPI,
    single_layout: ImageLayout,
    auth_repo: str,
    tmp_path: Path,
) -> None:
    repo = f"{auth_accounts.tenant}/{auth_repo}"
    ref = f"{auth_registry.address}/{repo}:v1"
    ctr("images", "import", tar_layout(single_layout.path, tmp_path / "s.tar", image_name=ref))
    pusher = auth_accounts.pusher
    puller = Account(
        *credentials_from_secret(auth_accounts.puller_secret_yaml, auth_registry.address)
    )

    for wrong in (Account(pusher.username, "wrong"), puller, auth_accounts.foreign_puller):
        ctr.refused("images", "push", "--plain-http", "--user", wrong.creds, ref)
    ctr.refused("images", "push", "--plain-http", ref)
    assert auth_api.get_manifest(repo, "v1").status_code == 404

    ctr("images", "push", "--plain-http", "--user", pusher.creds, ref)
    assert auth_api.manifest_digest(repo, "v1") == single_layout.digest
    for digest in single_layout.image.blob_digests:
        assert auth_api.blob_exists(repo, digest), digest

    # What the robot pushed, it pulls back.
    ctr.remove_image(ref, single_layout.image.blob_digests)
    ctr("images", "pull", "--plain-http", "--user", pusher.creds, ref)
    assert ctr.images()[ref] == single_layout.digest
    ctr.remove_image(ref, single_layout.image.blob_digests)
