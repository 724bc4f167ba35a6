"""A public tenant: anyone pulls without credentials (skopeo, ctr); nobody pushes anonymously.

A client with no credentials gets an anonymous token from the token service; in a public tenant
it grants pull, never push. A private tenant grants an anonymous client nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.images import ImageLayout, sha256_digest
from tests.support.processes import (
    Account,
    AuthAccounts,
    ContainerdProcess,
    RegistryAPI,
    RegistryProcess,
    run,
    wait_until,
)

pytestmark = pytest.mark.e2e

REFUSED = re.compile(
    r"401|403|unauthorized|denied|authorization|authentication required", re.IGNORECASE
)


def skopeo_run(skopeo: str, tmp_path: Path, *args: str, check: bool = True) -> str:
    # An auth file that does not exist: skopeo must not find credentials anywhere.
    env = {"REGISTRY_AUTH_FILE": str(tmp_path / "no-auth.json")}
    result = run([skopeo, *args], env=env, check=check, timeout=180)
    if not check:
        assert result.returncode != 0, f"expected a refusal, got success:\n{result.stdout}"
        assert REFUSED.search(result.stderr), result.stderr
    return result.stdout


@pytest.fixture
def public_repo(
    auth_accounts: AuthAccounts,
    auth_api: RegistryAPI,
    seed_image: Callable[..., None],
    single_layout: ImageLayout,
    auth_repo: str,
) -> str:
    repo = f"{auth_accounts.public_tenant}/{auth_repo}"
    seed_image(single_layout.skopeo_ref, f"{repo}:v1", auth_accounts.public_writer)
    assert auth_api.manifest_digest(repo, "v1") == single_layout.digest
    return repo


def test_skopeo_anonymous_pull_public_not_push(
    skopeo: str,
    auth_registry: RegistryProcess,
    auth_accounts: AuthAccounts,
    auth_api: RegistryAPI,
    single_layout: ImageLayout,
    public_repo: str,
    tmp_path: Path,
) -> None:
    remote = f"docker://{auth_registry.address}/{public_repo}"
    info = json.loads(skopeo_run(skopeo, tmp_path, "inspect", "--tls-verify=false", f"{remote}:v1"))
    assert info["Digest"] == single_layout.digest
    out = tmp_path / "pulled"
    skopeo_run(skopeo, tmp_path, "copy", "--src-tls-verify=false", f"{remote}:v1", f"dir:{out}")
    assert sha256_digest((out / "manifest.json").read_bytes()) == single_layout.digest

    # Anonymous pushes are refused, to a new tag and to a new repository alike.
    for dest in (f"{remote}:v2", f"{remote}-new:v1"):
        skopeo_run(skopeo, tmp_path, "copy", "--dest-tls-verify=false",
                   single_layout.skopeo_ref, dest, check=False)  # fmt: skip
    assert auth_api.tags(public_repo) == ["v1"]
    # Wrong credentials are refused even where no credentials would do.
    wrong = Account(auth_accounts.public_writer.username, "wrong")
    skopeo_run(skopeo, tmp_path, "inspect", "--tls-verify=false", "--creds", wrong.creds,
               f"{remote}:v1", check=False)  # fmt: skip

    # The same image in a private tenant is not anonymous.
    private = f"{auth_accounts.tenant}/{public_repo.partition('/')[2]}"
    run(
        [skopeo, "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
         "--src-creds", auth_accounts.admin.creds, "--dest-creds", auth_accounts.writer.creds,
         f"{remote}:v1", f"docker://{auth_registry.address}/{private}:v1"],
        timeout=180,
    )  # fmt: skip
    skopeo_run(skopeo, tmp_path, "inspect", "--tls-verify=false",
               f"docker://{auth_registry.address}/{private}:v1", check=False)  # fmt: skip


def test_ctr_anonymous_pull_public_not_push(
    cri_containerd: ContainerdProcess,
    auth_registry: RegistryProcess,
    auth_accounts: AuthAccounts,
    auth_api: RegistryAPI,
    single_layout: ImageLayout,
    seed_image: Callable[..., None],
    public_repo: str,
) -> None:
    namespace = f"anon-{uuid.uuid4().hex[:8]}"  # nothing left by other tests shares its content

    def ctr(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return cri_containerd.ctr("--namespace", namespace, *args, check=check)

    ref = f"{auth_registry.address}/{public_repo}:v1"
    ctr("images", "pull", "--plain-http", ref)
    assert ref in ctr("images", "ls", "-q").stdout.split()

    # The blobs are there already, so the refusal comes at the manifest PUT (401); ctr 1.6
    # reports it as "failed to copy: io: read/write on closed pipe" (the PUT body's pipe closes
    # when the request fails), so the registry's state is what proves the refusal.
    pushed = f"{auth_registry.address}/{public_repo}:anon"
    ctr("images", "tag", ref, pushed)
    result = ctr("images", "push", "--plain-http", pushed, check=False)
    assert result.returncode != 0, result.stdout
    assert REFUSED.search(result.stderr) or "closed pipe" in result.stderr, result.stderr
    assert auth_api.tags(public_repo) == ["v1"]

    # A private tenant: an anonymous pull is refused.
    private = f"{auth_accounts.tenant}/{public_repo.partition('/')[2]}"
    seeded = f"{auth_registry.address}/{private}:v1"
    seed_image(single_layout.skopeo_ref, f"{private}:v1", auth_accounts.writer)
    result = ctr("images", "pull", "--plain-http", seeded, check=False)
    assert result.returncode != 0, result.stdout
    assert REFUSED.search(result.stderr), result.stderr

    ctr("images", "rm", "--sync", ref, pushed)
    wait_until(
        lambda: (
            not set(single_layout.image.blob_digests)
            & set(ctr("content", "ls", "-q").stdout.split())
        ),
        timeout=30,
        message="containerd to drop the pulled content",
    )
