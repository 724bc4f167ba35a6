"""The auth suite: unit tests of tokens, keys and scopes; the policy against a real migrated
SQLite database; and the token service and tenant isolation over real HTTP."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# pyproject sets no pytest `pythonpath`; make `tests.support` importable under a bare `pytest`.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


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
