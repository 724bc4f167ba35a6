"""The auth suite: unit tests of tokens, keys and scopes; the policy against a real migrated
SQLite database; and the token service and tenant isolation over real HTTP.

The modules that start servers (``SERVER_MODULES``) are collected once per backend: as
themselves for "sqlite-fs", and again as ``<module>[pg-s3]``, whose server runs on a fresh
PostgreSQL database and S3 prefix (tests/conftest.py). Their servers are module fixtures, so a
second module, imported afresh under another name, gives the pg-s3 run its own server, seed
and module state, while the test files stay backend-agnostic.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

# pyproject sets no pytest `pythonpath`; make `tests.support` importable under a bare `pytest`.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.auth import support  # noqa: E402
from tests.support.backends import ServerBackends  # noqa: E402

SERVER_MODULES = {"test_isolation.py", "test_token_service.py"}
PG_S3 = "pg-s3"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backend(name): the backend this module's servers use")


class PgS3Module(pytest.Module):
    """A second copy of a test module: pytest registers fixtures once per module object."""

    def _getobj(self) -> ModuleType:
        name = f"tests.auth.{self.path.stem}__pg_s3"
        if name in sys.modules:
            return sys.modules[name]
        # Through pytest's assertion rewriter when it is active, as for any test module.
        rewriter = next(
            (f for f in sys.meta_path if type(f).__name__ == "AssertionRewritingHook"), None
        )
        spec = importlib.util.spec_from_file_location(name, self.path, loader=rewriter)  # type: ignore[arg-type]
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if file_path.name not in SERVER_MODULES:
        return None
    name = f"{file_path.name}[{PG_S3}]"
    module = PgS3Module.from_parent(
        parent, path=file_path, name=name, nodeid=f"{parent.nodeid}/{name}"
    )
    module.add_marker(pytest.mark.backend(PG_S3))
    return module


@pytest.fixture(scope="module", autouse=True)
def server_backend(
    request: pytest.FixtureRequest, server_backends: ServerBackends
) -> Iterator[str]:
    """The backend for the servers this module starts (``support.seed_data_dir`` and
    ``support.token_env`` apply it): a fresh database and S3 prefix per module on pg-s3."""
    marker = request.node.get_closest_marker("backend")
    backend = marker.args[0] if marker else "sqlite-fs"
    env = server_backends.env(request, backend, f"auth-{request.node.path.stem}")
    support.use_backend(env)
    try:
        yield backend
    finally:
        support.use_backend({})


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database migrated once per session; tests copy it."""
    from registry.db import migrate

    path = tmp_path_factory.mktemp("auth-db-template") / "berth.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path
