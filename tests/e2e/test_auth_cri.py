"""containerd's CRI image service pulling with an imagePullSecret, exactly as a kubelet does.

``berth robot create acme/puller --access pull --k8s-secret NAME`` prints a
kubernetes.io/dockerconfigjson Secret; the kubelet decodes its ``.dockerconfigjson``, takes the
entry for the image's registry and sends username and password in PullImageRequest.auth. The
CRI plugin (in the ``k8s.io`` namespace) then runs the Docker token flow against the registry.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Callable

import pytest
import yaml

from tests.support.cri import CRIImageClient, credentials_from_secret
from tests.support.images import IndexLayout
from tests.support.processes import Account, AuthAccounts, RegistryAPI, RegistryProcess

pytestmark = pytest.mark.e2e

REFUSED = re.compile(r"401|403|unauthorized|denied|authorization", re.IGNORECASE)
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine())


def puller(auth_accounts: AuthAccounts, auth_registry: RegistryProcess) -> Account:
    return Account(
        *credentials_from_secret(auth_accounts.puller_secret_yaml, auth_registry.address)
    )


def refused(client: CRIImageClient, ref: str, account: Account | None) -> str:
    with pytest.raises(client.grpc.RpcError) as caught:
        if account is None:
            client.pull(ref)
        else:
            client.pull(ref, account.username, account.password)
    details = caught.value.details() or ""  # type: ignore[attr-defined]
    assert REFUSED.search(details), details
    assert not [img for img in client.list_images() if ref in img.repo_tags]
    return details


@pytest.fixture
def seeded(
    auth_accounts: AuthAccounts,
    auth_api: RegistryAPI,
    seed_image: Callable[..., None],
    index_layout: IndexLayout,
    auth_repo: str,
) -> str:
    """A private two-platform image: ``acme/...:v1``."""
    repo = f"{auth_accounts.tenant}/{auth_repo}"
    seed_image(index_layout.skopeo_ref, f"{repo}:v1", auth_accounts.writer, all_platforms=True)
    assert auth_api.manifest_digest(repo, "v1") == index_layout.digest
    return repo


def test_secret_names_this_registry(
    auth_accounts: AuthAccounts, auth_registry: RegistryProcess
) -> None:
    secret = yaml.safe_load(auth_accounts.puller_secret_yaml)
    assert secret["metadata"] == {"name": "acme-pull", "namespace": "apps"}
    account = puller(auth_accounts, auth_registry)
    assert account.username == f"{auth_accounts.tenant}+puller"


@pytest.mark.skipif(HOST_ARCH is None, reason=f"no test image for {platform.machine()}")
def test_pull_with_image_pull_secret(
    cri_client: CRIImageClient,
    auth_registry: RegistryProcess,
    auth_accounts: AuthAccounts,
    index_layout: IndexLayout,
    seeded: str,
) -> None:
    ref = f"{auth_registry.address}/{seeded}:v1"
    account = puller(auth_accounts, auth_registry)
    image_ref = cri_client.pull(ref, account.username, account.password)

    # The CRI image ID is the config digest of the host platform's image.
    want = index_layout.index.images[f"linux/{HOST_ARCH}"]
    assert image_ref == want.config_digest
    listed = [img for img in cri_client.list_images() if ref in img.repo_tags]
    assert len(listed) == 1, cri_client.list_images()
    assert listed[0].id == want.config_digest
    assert f"{auth_registry.address}/{seeded}@{index_layout.digest}" in listed[0].repo_digests

    cri_client.remove(ref)
    assert not [img for img in cri_client.list_images() if ref in img.repo_tags]


def test_pull_refused_without_the_right_secret(
    cri_client: CRIImageClient,
    auth_registry: RegistryProcess,
    auth_accounts: AuthAccounts,
    seeded: str,
) -> None:
    ref = f"{auth_registry.address}/{seeded}:v1"
    account = puller(auth_accounts, auth_registry)
    refused(cri_client, ref, Account(account.username, account.password + "x"))
    refused(cri_client, ref, Account(account.username, ""))
    # A private tenant: no anonymous pulls.
    refused(cri_client, ref, None)
    # Another tenant's robot: its token grants nothing in this tenant.
    refused(cri_client, ref, auth_accounts.foreign_puller)
