"""A real, migrated database for every store test.

Every test runs on SQLite and on PostgreSQL. SQLite: the schema is migrated once per session
into a template file, and each test gets its own copy. PostgreSQL: a database of this suite's
own on the session's server (``postgres_server``, tests/conftest.py), migrated once and emptied
after each test. Without a PostgreSQL server those variants skip, or fail in CI.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, pool, text

from registry.db import migrate
from registry.db.models import Base
from registry.db.session import Database, sync_url
from tests.support.backends import PgDatabases


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db-template") / "berth.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_migrated(pg_databases: PgDatabases) -> str:
    url = pg_databases.create("db-stores")
    migrate.upgrade(url)
    return url


def _truncate_all(url: str) -> None:
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            # All but the identity generation's one row, which only ever counts up.
            tables = [t for t in Base.metadata.sorted_tables if t.name != "identity_generation"]
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "berth.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_migrated")
    yield url
    _truncate_all(url)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()
