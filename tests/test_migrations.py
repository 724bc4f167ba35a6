"""Alembic migrations: they build exactly the schema registry.db.models declares.

Runs against a temporary SQLite file, and also against PostgreSQL when
BERTH_TEST_POSTGRES_URL names a database the tests own (they create and drop its tables).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, pool

from registry.db import migrate
from registry.db.models import Base
from registry.db.session import sync_url

POSTGRES_URL = os.environ.get("BERTH_TEST_POSTGRES_URL", "")
MODEL_TABLES = set(Base.metadata.tables)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(not POSTGRES_URL, reason="BERTH_TEST_POSTGRES_URL not set"),
        ),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        # A directory that does not exist yet: upgrade() must create it.
        yield f"sqlite:///{tmp_path / 'nested' / 'berth.db'}"
        return
    # The database belongs to the tests, and tests/db may hold it migrated for the whole
    # session: start from an empty schema, and leave it as it was found.
    was_migrated = bool(migrate.current_tables(POSTGRES_URL) - {"alembic_version"})
    migrate.downgrade(POSTGRES_URL, "base")
    yield POSTGRES_URL
    if was_migrated:
        migrate.upgrade(POSTGRES_URL)
    else:
        migrate.downgrade(POSTGRES_URL, "base")


def schema_differences(url: str) -> list[object]:
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_upgrade_creates_every_table(database_url: str) -> None:
    migrate.upgrade(database_url)
    tables = migrate.current_tables(database_url)
    assert tables >= MODEL_TABLES
    assert tables - MODEL_TABLES == {"alembic_version"}


def test_downgrade_to_base_removes_every_table(database_url: str) -> None:
    migrate.upgrade(database_url)
    migrate.downgrade(database_url, "base")
    assert migrate.current_tables(database_url) - {"alembic_version"} == set()


def test_upgrade_again_after_downgrade(database_url: str) -> None:
    migrate.upgrade(database_url)
    migrate.downgrade(database_url, "base")
    migrate.upgrade(database_url)
    assert migrate.current_tables(database_url) >= MODEL_TABLES
    assert schema_differences(database_url) == []


def test_upgrade_is_idempotent(database_url: str) -> None:
    migrate.upgrade(database_url)
    migrate.upgrade(database_url)
    assert migrate.current_tables(database_url) >= MODEL_TABLES


def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    migrate.upgrade(database_url)
    assert schema_differences(database_url) == []


def test_every_revision_downgrades_and_upgrades_step_by_step(database_url: str) -> None:
    # Walking one revision at a time catches a downgrade that only works from head.
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config(database_url))
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    for revision in revisions:
        migrate.upgrade(database_url, revision)
    for _ in revisions:
        migrate.downgrade(database_url, "-1")
    assert migrate.current_tables(database_url) - {"alembic_version"} == set()
    migrate.upgrade(database_url)
    assert schema_differences(database_url) == []
