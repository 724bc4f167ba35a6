"""Fixtures for the administration tests: a migrated SQLite database per test, and the CLI.

The schema is migrated once per session into a template file; each test gets its own copy.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# pyproject sets no pytest `pythonpath`; make `tests.support` importable under a bare `pytest`.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from registry.db import migrate  # noqa: E402
from registry.db.session import Database  # noqa: E402


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("admin-db-template") / "berth.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
async def db(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "berth.db"
    shutil.copyfile(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    yield database
    await database.dispose()
