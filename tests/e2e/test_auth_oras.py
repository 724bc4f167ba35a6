"""oras-py with token auth: a tenant's user pushes and pulls an artifact; wrong passwords fail.

oras-py's ``login`` only records the credentials (in ``config_path``, here a file of the test's
own) and sets them for its token requests: it does not ask the registry. A wrong password shows
when the client first needs a token, at the push or pull.

oras-py 0.2.x keeps the first token it gets and, on a 401 ``insufficient_scope``, sends that
same token again: it asks for a new one only on a 403. A push starts with a HEAD (scope: pull),
so its POST of an upload (scope: pull,push) is refused. Berth answers 401, as Distribution and
Docker Hub do, and docker, containerd and skopeo all get a new token there: that is a client
limitation, recorded by ``test_stock_client_push_keeps_pull_token`` (strict xfail: it fails the
run once oras-py is fixed, so the workaround can go). The other tests use ``RefreshingClient``,
which does what docker does there (drop the token, ask for one with the new scope), and skips
oras-py's retry decorator (five retries with sleeps of up to 83 s each on any error, so a
refused login would take two minutes to fail).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import oras.client
import oras.provider
import pytest
import requests

from tests.support.images import sha256_digest
from tests.support.processes import Account, AuthAccounts, RegistryAPI, RegistryProcess

pytestmark = pytest.mark.e2e

FILE_TYPE = "application/vnd.berth.test.file.v1"
CONFIG_TYPE = "application/vnd.berth.test.config.v1+json"


_DO_REQUEST_WITHOUT_RETRIES = oras.provider.Registry.do_request.__wrapped__  # type: ignore[attr-defined]


class RefreshingClient(oras.client.OrasClient):
    """oras-py that gets a new token on 401 insufficient_scope (see the module docstring)."""

    def do_request(self, *args: Any, **kwargs: Any) -> requests.Response:
        response = _DO_REQUEST_WITHOUT_RETRIES(self, *args, **kwargs)
        challenge = response.headers.get("Www-Authenticate", "")
        if response.status_code == 401 and 'error="insufficient_scope"' in challenge:
            self.auth.token = None  # the next 401 asks the token service with its scope
            response = _DO_REQUEST_WITHOUT_RETRIES(self, *args, **kwargs)
        return response


def client_for(
    registry: RegistryProcess,
    account: Account,
    config: Path,
    cls: type[oras.client.OrasClient] = RefreshingClient,
) -> oras.client.OrasClient:
    client = cls(hostname=registry.address, insecure=True)
    out = client.login(
        account.username, account.password, hostname=registry.address, config_path=str(config)
    )
    assert out.get("Status") == "Login Succeeded", out
    return client


def write_files(directory: Path) -> dict[str, bytes]:
    files = {"notes.txt": b"berth auth artifact\n", "data.json": json.dumps([1, 2, 3]).encode()}
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return files


def test_push_pull_artifact(
    auth_registry: RegistryProcess,
    auth_accounts: AuthAccounts,
    auth_api: RegistryAPI,
    auth_repo: str,
    tmp_path: Path,
) -> None:
    files = write_files(tmp_path / "src")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"kind": "berth-auth-e2e"}))
    repo = f"{auth_accounts.tenant}/{auth_repo}"
    target = f"{auth_registry.address}/{repo}:v1"
    push_args = {
        "target": target,
        "files": [f"{tmp_path / 'src' / name}:{FILE_TYPE}" for name in files],
        "manifest_config": f"{config}:{CONFIG_TYPE}",
        "disable_path_validation": True,
    }
    logins = tmp_path / "docker-config.json"

    writer = client_for(auth_registry, auth_accounts.writer, logins)
    resp = writer.push(**push_args)
    assert resp.status_code == 201, resp.text
    digest = resp.headers.get("Docker-Content-Digest")
    assert digest and digest == auth_api.manifest_digest(repo, "v1")
    assert json.loads(logins.read_text())["auths"][auth_registry.address]["auth"]

    reader = client_for(auth_registry, auth_accounts.reader, logins)
    pulled = reader.pull(target=target, outdir=str(tmp_path / "out"))
    assert {Path(p).name for p in pulled} == set(files)
    for name, data in files.items():
        assert (tmp_path / "out" / name).read_bytes() == data
    manifest = reader.get_manifest(target)
    assert manifest["config"]["mediaType"] == CONFIG_TYPE
    assert {layer["digest"] for layer in manifest["layers"]} == {
        sha256_digest(data) for data in files.values()
    }


def test_wrong_password_and_wrong_role_fail(
    auth_registry: RegistryProcess,
    auth_accounts: AuthAccounts,
    auth_api: RegistryAPI,
    auth_repo: str,
    tmp_path: Path,
) -> None:
    files = write_files(tmp_path / "src")
    repo = f"{auth_accounts.tenant}/{auth_repo}"
    target = f"{auth_registry.address}/{repo}:v1"
    push_args = {
        "target": target,
        "files": [f"{tmp_path / 'src' / name}:{FILE_TYPE}" for name in files],
        "disable_path_validation": True,
    }
    logins = tmp_path / "docker-config.json"
    wrong = Account(auth_accounts.writer.username, "wrong")
    for account in (wrong, auth_accounts.reader, auth_accounts.outsider):
        client = client_for(auth_registry, account, logins)
        with pytest.raises(Exception) as caught:  # noqa: B017 - oras-py raises several kinds
            resp = client.push(**push_args)
            # Some oras-py versions return the failed response instead of raising.
            resp.raise_for_status()
        assert auth_api.get_manifest(repo, "v1").status_code == 404, (account, caught.value)

    client_for(auth_registry, auth_accounts.writer, logins).push(**push_args)
    for account in (wrong, auth_accounts.outsider):
        client = client_for(auth_registry, account, logins)
        with pytest.raises(Exception):  # noqa: B017
            client.pull(target=target, outdir=str(tmp_path / "out"))
        assert not (tmp_path / "out" / "notes.txt").exists()


@pytest.mark.xfail(
    strict=True,
    reason="oras-py client limitation, not a registry bug: it resends its cached pull-scoped "
    "token after a 401 insufficient_scope (it refreshes only on 403), so its first push of a "
    "blob is refused",
)
def test_stock_client_push_keeps_pull_token(
    auth_registry: RegistryProcess,
    auth_accounts: AuthAccounts,
    auth_api: RegistryAPI,
    auth_repo: str,
    tmp_path: Path,
) -> None:
    files = write_files(tmp_path / "src")
    repo = f"{auth_accounts.tenant}/{auth_repo}"
    client = client_for(
        auth_registry, auth_accounts.writer, tmp_path / "config.json", oras.client.OrasClient
    )
    resp = client.push(
        target=f"{auth_registry.address}/{repo}:v1",
        files=[f"{tmp_path / 'src' / name}:{FILE_TYPE}" for name in files],
        disable_path_validation=True,
    )
    assert resp.status_code == 201, resp.text
    assert auth_api.manifest_digest(repo, "v1")
