"""skopeo against the registry with token auth: login, copy both ways, inspect, wrong credentials.

Every command gets its own auth file (``--authfile``, and ``REGISTRY_AUTH_FILE`` for those that
take credentials on the command line), so nothing is read from or written to the machine's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.images import ImageLayout, sha256_digest
from tests.support.processes import (
    Account,
    AuthAccounts,
    RegistryAPI,
    RegistryProcess,
    run,
)

pytestmark = pytest.mark.e2e

TLS_OFF = "--tls-verify=false"
REFUSED = re.compile(
    r"unauthorized|denied|invalid username|401|403|authentication required", re.IGNORECASE
)


def skopeo_run(
    skopeo: str, authfile: Path, *args: str | Path, check: bool = True, input: str | None = None
) -> str:
    result = run(
        [skopeo, *args],
        env={"REGISTRY_AUTH_FILE": str(authfile)},
        check=check,
        input=input,
        timeout=180,
    )
    if not check:
        assert result.returncode != 0, f"expected a refusal, got success:\n{result.stdout}"
        assert REFUSED.search(result.stderr), result.stderr
        return result.stderr
    return result.stdout


def login(skopeo: str, authfile: Path, address: str, account: Account, check: bool = True) -> str:
    return skopeo_run(
        skopeo, authfile, "login", TLS_OFF, "--authfile", authfile,
        "--username", account.username, "--password-stdin", address,
        check=check, input=account.password + "\n",
    )  # fmt: skip


def test_login_wrong_then_right(
    skopeo: str, auth_registry: RegistryProcess, auth_accounts: AuthAccounts, tmp_path: Path
) -> None:
    authfile = tmp_path / "auth.json"
    writer = auth_accounts.writer
    login(skopeo, authfile, auth_registry.address, Account(writer.username, "wrong"), check=False)
    assert not authfile.exists() or auth_registry.address not in authfile.read_text()

    out = login(skopeo, authfile, auth_registry.address, writer)
    assert "Login Succeeded" in out
    auths = json.loads(authfile.read_text())["auths"]
    assert auth_registry.address in auths

    skopeo_run(skopeo, authfile, "logout", "--authfile", authfile, auth_registry.address)
    assert auth_registry.address not in json.loads(authfile.read_text()).get("auths", {})


def test_copy_with_creds_both_ways(
    skopeo: str,
    auth_registry: RegistryProcess,
    auth_accounts: AuthAccounts,
    auth_api: RegistryAPI,
    single_layout: ImageLayout,
    auth_repo: str,
    tmp_path: Path,
) -> None:
    authfile = tmp_path / "none.json"  # stays absent: only the flags carry credentials
    repo = f"{auth_accounts.tenant}/{auth_repo}"
    remote = f"docker://{auth_registry.address}/{repo}"
    writer, reader = auth_accounts.writer, auth_accounts.reader
    src = single_layout.skopeo_ref

    bad = Account(writer.username, "wrong")
    for creds in (None, bad, reader, auth_accounts.outsider):
        flags = ["--dest-creds", creds.creds] if creds else []
        skopeo_run(skopeo, authfile, "copy", "--dest-tls-verify=false", *flags, src,
                   f"{remote}:v1", check=False)  # fmt: skip
    assert auth_api.get_manifest(repo, "v1").status_code == 404

    skopeo_run(skopeo, authfile, "copy", "--dest-tls-verify=false", "--dest-creds", writer.creds,
               src, f"{remote}:v1")  # fmt: skip
    assert auth_api.manifest_digest(repo, "v1") == single_layout.digest

    for creds in (None, Account(reader.username, "wrong"), auth_accounts.outsider):
        flags = ["--src-creds", creds.creds] if creds else []
        skopeo_run(skopeo, authfile, "copy", "--src-tls-verify=false", *flags, f"{remote}:v1",
                   f"dir:{tmp_path / 'refused'}", check=False)  # fmt: skip

    out = tmp_path / "pulled"
    skopeo_run(skopeo, authfile, "copy", "--src-tls-verify=false", "--src-creds", reader.creds,
               f"{remote}:v1", f"dir:{out}")  # fmt: skip
    assert sha256_digest((out / "manifest.json").read_bytes()) == single_layout.digest
    assert not authfile.exists()


def test_copy_with_login_auth_file(
    skopeo: str,
    auth_registry: RegistryProcess,
    auth_accounts: AuthAccounts,
    auth_api: RegistryAPI,
    single_layout: ImageLayout,
    auth_repo: str,
    tmp_path: Path,
) -> None:
    repo = f"{auth_accounts.tenant}/{auth_repo}"
    remote = f"docker://{auth_registry.address}/{repo}"
    writer_file, reader_file = tmp_path / "writer.json", tmp_path / "reader.json"
    login(skopeo, writer_file, auth_registry.address, auth_accounts.writer)
    login(skopeo, reader_file, auth_registry.address, auth_accounts.reader)

    skopeo_run(skopeo, writer_file, "copy", "--dest-tls-verify=false", "--authfile", writer_file,
               single_layout.skopeo_ref, f"{remote}:v1")  # fmt: skip
    assert auth_api.manifest_digest(repo, "v1") == single_layout.digest
    # A reader's login pulls but does not push.
    skopeo_run(skopeo, reader_file, "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
               "--authfile", reader_file, f"{remote}:v1", f"{remote}:v2", check=False)  # fmt: skip
    assert auth_api.get_manifest(repo, "v2").status_code == 404

    out = tmp_path / "pulled"
    skopeo_run(skopeo, reader_file, "copy", "--src-tls-verify=false", "--authfile", reader_file,
               f"{remote}:v1", f"oci:{out}:v1")  # fmt: skip
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == single_layout.digest

    info = json.loads(
        skopeo_run(
            skopeo, reader_file, "inspect", TLS_OFF, "--authfile", reader_file, f"{remote}:v1"
        )  # fmt: skip
    )
    assert info["Digest"] == single_layout.digest


def test_inspect_with_creds(
    skopeo: str,
    auth_registry: RegistryProcess,
    auth_accounts: AuthAccounts,
    single_layout: ImageLayout,
    seed_image: Callable[..., None],
    auth_repo: str,
    tmp_path: Path,
) -> None:
    repo = f"{auth_accounts.tenant}/{auth_repo}"
    seed_image(single_layout.skopeo_ref, f"{repo}:v1", auth_accounts.writer)
    remote = f"docker://{auth_registry.address}/{repo}:v1"
    authfile = tmp_path / "none.json"

    for account in (auth_accounts.reader, auth_accounts.pusher, auth_accounts.admin):
        info = json.loads(
            skopeo_run(skopeo, authfile, "inspect", TLS_OFF, "--creds", account.creds, remote)
        )
        assert info["Digest"] == single_layout.digest, account.username
        assert info["Layers"] == single_layout.image.layer_digests

    skopeo_run(skopeo, authfile, "inspect", TLS_OFF, remote, check=False)
    for account in (
        Account(auth_accounts.reader.username, "wrong"),
        Account("nobody", "nothing"),
        auth_accounts.outsider,
        auth_accounts.foreign_puller,
    ):
        skopeo_run(skopeo, authfile, "inspect", TLS_OFF, "--creds", account.creds, remote,
                   check=False)  # fmt: skip
