"""Fixtures for end-to-end tests that drive the registry with real clients.

Run them with ``pytest -m e2e tests/e2e`` (as root: containerd and dockerd need it).

* ``registry``: the Berth server under test, ``python -m registry serve`` on a free
  loopback port with a fresh data directory, one per session. Set
  ``E2E_REGISTRY_URL=http://127.0.0.1:5000`` to aim the suite at a registry
  that is already running instead (for instance a reference implementation, to
  check the tests themselves). The name has no ``BERTH_`` prefix on purpose: the
  server reads every ``BERTH_*`` variable as a setting and rejects unknown ones.
* ``containerd`` / ``dockerd``: private daemons with their own directories and sockets.
* ``single_layout`` / ``index_layout``: OCI image layouts built offline.

When a client binary is missing or its daemon cannot start, the test is skipped
with the reason, except when the ``CI`` environment variable is set: there it
fails, so a broken CI image cannot turn the suite silently green. The registry
under test failing to start is always a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

# `tests` is not a package and pyproject sets no pytest `pythonpath`, so a bare
# `pytest` run would not find `tests.support`; `python -m pytest` would. Put the
# checkout on sys.path so both work.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.images import (  # noqa: E402
    ImageLayout,
    IndexLayout,
    write_image_layout,
    write_index_layout,
)
from tests.support.processes import (  # noqa: E402
    ContainerdProcess,
    DaemonStartError,
    DockerdProcess,
    RegistryAPI,
    RegistryProcess,
    external_registry,
    find_docker_cli,
    start_containerd,
    start_dockerd,
    start_registry,
)


def unavailable(reason: str) -> NoReturn:
    """Skip locally, fail in CI: a missing client there is a broken environment."""
    if os.environ.get("CI"):
        pytest.fail(f"e2e prerequisite unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"`{name}` is not installed")
    return path


# --------------------------------------------------------------------------- daemons


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    external = os.environ.get("E2E_REGISTRY_URL")
    if external:
        yield external_registry(external)
        return
    data_dir = tmp_path_factory.mktemp("berth-data")
    try:
        reg = start_registry(data_dir)
    except DaemonStartError as exc:
        pytest.fail(f"the Berth registry did not start:\n{exc}", pytrace=False)
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def api(registry: RegistryProcess) -> Iterator[RegistryAPI]:
    client = RegistryAPI(registry)
    yield client
    client.close()


@pytest.fixture(scope="session")
def skopeo() -> str:
    return require_binary("skopeo")


@pytest.fixture(scope="session")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerdProcess]:
    require_binary("containerd")
    require_binary("ctr")
    try:
        daemon = start_containerd(tmp_path_factory.mktemp("containerd"))
    except DaemonStartError as exc:
        unavailable(f"containerd did not start: {exc}")
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def dockerd(
    tmp_path_factory: pytest.TempPathFactory, registry: RegistryProcess
) -> Iterator[DockerdProcess]:
    require_binary("dockerd")
    if find_docker_cli() is None:
        unavailable("the docker CLI is not installed (or $E2E_DOCKER_BIN is empty)")
    try:
        daemon = start_dockerd(
            tmp_path_factory.mktemp("dockerd"), insecure_registries=[registry.address]
        )
    except DaemonStartError as exc:
        unavailable(f"dockerd did not start: {exc}")
    try:
        yield daemon
    finally:
        daemon.stop()


# --------------------------------------------------------------------------- images


@pytest.fixture(scope="session")
def single_layout(tmp_path_factory: pytest.TempPathFactory) -> ImageLayout:
    return write_image_layout(tmp_path_factory.mktemp("layouts") / "single", "single", tag="v1")


@pytest.fixture(scope="session")
def index_layout(tmp_path_factory: pytest.TempPathFactory) -> IndexLayout:
    return write_index_layout(tmp_path_factory.mktemp("layouts") / "index", "index", tag="multi")


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository name unique to this test: tests share one registry."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    test = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"e2e/{module}/{test}-{uuid.uuid4().hex[:6]}"


# --------------------------------------------------------------------------- reporting


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # A failing client command often only makes sense next to the server's log.
    if report.failed and call.when == "call":
        funcargs = getattr(item, "funcargs", {})
        for name in ("registry", "containerd", "dockerd"):
            proc = funcargs.get(name)
            if proc is not None and hasattr(proc, "log_tail"):
                report.sections.append((f"{name} log (tail)", proc.log_tail(80)))
    return report


# --------------------------------------------------------------------------- token auth
# The test_auth_* suites run against a second registry with token auth on; its tenants,
# users and robots are made once with the admin CLI, as an operator would.

import json  # noqa: E402
import secrets  # noqa: E402
from collections.abc import Callable  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

from tests.support.cri import CRIImageClient, CRIUnavailable  # noqa: E402
from tests.support.processes import (  # noqa: E402
    Account,
    AuthAccounts,
    BearerChallengeAuth,
    berth_cli,
    run,
)


@pytest.fixture(scope="session")
def auth_admin() -> Account:
    """The site admin the token-auth registry creates at its first start."""
    return Account("admin", secrets.token_urlsafe(18))


@pytest.fixture(scope="session")
def auth_registry(
    tmp_path_factory: pytest.TempPathFactory, auth_admin: Account
) -> Iterator[RegistryProcess]:
    if os.environ.get("E2E_REGISTRY_URL"):
        pytest.skip("the token-auth suites set up accounts in a registry they start themselves")
    data_dir = tmp_path_factory.mktemp("berth-auth-data")
    env = {
        "BERTH_AUTH__MODE": "token",
        "BERTH_ADMIN_PASSWORD": auth_admin.password,
        # Every client logs in from 127.0.0.1, and the suites try wrong passwords on purpose:
        # the default throttle (5 failures per address) would lock the right ones out too.
        "BERTH_AUTH__THROTTLE__MAX_FAILURES": "100000",
        "BERTH_AUTH__THROTTLE__MAX_FAILURES_PER_ADDRESS": "100000",
    }
    try:
        reg = start_registry(data_dir, extra_env=env)
    except DaemonStartError as exc:
        pytest.fail(f"the Berth registry (token auth) did not start:\n{exc}", pytrace=False)
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def auth_accounts(auth_registry: RegistryProcess, auth_admin: Account) -> AuthAccounts:
    def cli(*args: str, input: str | None = None) -> str:
        return berth_cli(auth_registry, *args, input=input).stdout

    def user(name: str, tenant: str, role: str) -> Account:
        account = Account(name, secrets.token_urlsafe(12))
        cli("user", "create", name, "--password-stdin", input=account.password + "\n")
        cli("member", "add", tenant, name, "--role", role)
        return account

    def robot(ref: str, access: str) -> Account:
        out = json.loads(cli("robot", "create", ref, "--access", access, "--json"))
        return Account(out["username"], out["secret"])

    tenant, other, public = "acme", "globex", "pub"
    puller = ("robot", "create", f"{tenant}/puller", "--access", "pull")
    # Each CLI run spends most of its 2 s importing; SQLite's busy timeout orders the writes.
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda args: cli(*args), [
            ("tenant", "create", tenant), ("tenant", "create", other),
            ("tenant", "create", public, "--public"),
        ]))  # fmt: skip
        made = {
            "writer": pool.submit(user, "alice", tenant, "writer"),
            "reader": pool.submit(user, "rita", tenant, "reader"),
            "outsider": pool.submit(user, "gary", other, "writer"),
            "public_writer": pool.submit(user, "paula", public, "writer"),
            "pusher": pool.submit(robot, f"{tenant}/ci", "pull,push"),
            "foreign_puller": pool.submit(robot, f"{other}/puller", "pull"),
            "puller_secret_yaml": pool.submit(
                cli, *puller, "--k8s-secret", "acme-pull", "--namespace", "apps"
            ),
        }
        accounts = {name: future.result() for name, future in made.items()}
    return AuthAccounts(
        tenant=tenant, other_tenant=other, public_tenant=public, admin=auth_admin, **accounts
    )


@pytest.fixture(scope="session")
def auth_api(auth_registry: RegistryProcess, auth_accounts: AuthAccounts) -> Iterator[RegistryAPI]:
    """Raw OCI calls as the site admin, to check what the clients did."""
    client = RegistryAPI(auth_registry, auth=BearerChallengeAuth(auth_accounts.admin))
    yield client
    client.close()


@pytest.fixture
def auth_repo(request: pytest.FixtureRequest) -> str:
    """A repository name (without its tenant) unique to this test."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_auth_")
    test = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"{module}-{test}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def seed_image(skopeo: str, auth_registry: RegistryProcess) -> Callable[..., None]:
    """Push a local OCI layout to the auth registry with skopeo, as ``account``."""

    def seed(src: str, repo_ref: str, account: Account, all_platforms: bool = False) -> None:
        run(
            [skopeo, "copy", "--dest-tls-verify=false", "--dest-creds", account.creds,
             *(["--all"] if all_platforms else []), src,
             f"docker://{auth_registry.address}/{repo_ref}"],
            timeout=180,
        )  # fmt: skip

    return seed


@pytest.fixture(scope="session")
def cri_containerd(
    tmp_path_factory: pytest.TempPathFactory, auth_registry: RegistryProcess
) -> Iterator[ContainerdProcess]:
    """containerd with its CRI plugin on (the kubelet's image service), for the auth registry."""
    require_binary("containerd")
    require_binary("ctr")
    try:
        daemon = start_containerd(
            tmp_path_factory.mktemp("containerd-cri"),
            cri=True,
            plain_http_registries=[auth_registry.address],
        )
    except DaemonStartError as exc:
        unavailable(f"containerd with CRI did not start: {exc}")
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def auth_dockerd(
    tmp_path_factory: pytest.TempPathFactory, auth_registry: RegistryProcess
) -> Iterator[DockerdProcess]:
    require_binary("dockerd")
    if find_docker_cli() is None:
        unavailable("the docker CLI is not installed (or $E2E_DOCKER_BIN is empty)")
    try:
        daemon = start_dockerd(
            tmp_path_factory.mktemp("dockerd-auth"), insecure_registries=[auth_registry.address]
        )
    except DaemonStartError as exc:
        unavailable(f"dockerd did not start: {exc}")
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def cri_client(cri_containerd: ContainerdProcess) -> Iterator[CRIImageClient]:
    """The CRI ImageService of ``cri_containerd``, as a kubelet calls it."""
    try:
        client = CRIImageClient(cri_containerd.socket)
    except CRIUnavailable as exc:
        unavailable(str(exc))
    with client:
        yield client


class _AuthSuiteLogs:
    """Adds the auth suites' daemon logs to a failing test's report, as the hook above does."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if report.failed and call.when == "call":
            funcargs = getattr(item, "funcargs", {})
            for name in ("auth_registry", "cri_containerd", "auth_dockerd"):
                proc = funcargs.get(name)
                if proc is not None and hasattr(proc, "log_tail"):
                    report.sections.append((f"{name} log (tail)", proc.log_tail(80)))
        return report


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_AuthSuiteLogs(), "berth-e2e-auth-logs")
