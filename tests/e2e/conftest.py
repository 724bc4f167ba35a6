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
