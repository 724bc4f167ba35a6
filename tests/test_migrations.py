"""Alembic migrations: they build exactly the schema registry.db.models declares.

Runs against a temporary SQLite file, and against a fresh PostgreSQL database per test on the
session's server (``postgres_server``, tests/conftest.py; skipped without one, failed in CI).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import String, create_engine, pool, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from registry.db import migrate
from registry.db.models import Base
from registry.db.session import sync_url
from tests.support.backends import PgDatabases

MODEL_TABLES = set(Base.metadata.tables)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        # A directory that does not exist yet: upgrade() must create it.
        yield f"sqlite:///{tmp_path / 'nested' / 'berth.db'}"
        return
    databases: PgDatabases = request.getfixturevalue("pg_databases")
    yield databases.create(f"migrations-{request.node.name}")


def schema_differences(url: str) -> list[object]:
    """What Alembic's autogenerate sees differ, plus column collations, which it ignores."""
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences: list[object] = list(compare_metadata(context, Base.metadata))
            if conn.dialect.name == "postgresql":
                differences += collation_differences(conn)
            return differences
    finally:
        engine.dispose()


def collation_differences(conn: Connection) -> list[object]:
    """Columns whose collation on PostgreSQL is not what the models declare for PostgreSQL."""
    found = {
        (table, column): collation
        for table, column, collation in conn.execute(
            text(
                "SELECT table_name, column_name, collation_name FROM information_schema.columns"
                " WHERE table_schema = current_schema()"
            )
        )
    }
    dialect = postgresql.dialect()
    differences: list[object] = []
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            declared = column.type.dialect_impl(dialect)
            expected = declared.collation if isinstance(declared, String) else None
            actual = found.get((table.name, column.name))
            if expected != actual:
                differences.append(("collation", table.name, column.name, expected, actual))
    return differences


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


def test_listed_names_are_bytewise_on_postgresql_only(database_url: str) -> None:
    """0004: repository and tag names collate "C" on PostgreSQL; downgrading restores the
    database default; SQLite (bytewise already) is left alone."""
    migrate.upgrade(database_url)
    assert name_collations(database_url) == (
        {"repositories": "C", "tags": "C"}
        if database_url.startswith("postgresql")
        else {"repositories": None, "tags": None}
    )
    migrate.downgrade(database_url, "0003")
    assert name_collations(database_url) == {"repositories": None, "tags": None}
    migrate.upgrade(database_url)
    assert schema_differences(database_url) == []


def name_collations(url: str) -> dict[str, str | None]:
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            if conn.dialect.name != "postgresql":
                # SQLite keeps the declared collation in the table's SQL.
                return {
                    table: "C" if 'COLLATE "C"' in (sql or "") else None
                    for table, sql in conn.execute(
                        text(
                            "SELECT name, sql FROM sqlite_master"
                            " WHERE name IN ('repositories', 'tags')"
                        )
                    )
                }
            rows = conn.execute(
                text(
                    "SELECT table_name, collation_name FROM information_schema.columns"
                    " WHERE table_schema = current_schema() AND column_name = 'name'"
                    " AND table_name IN ('repositories', 'tags')"
                )
            )
            return {table: collation for table, collation in rows}
    finally:
        engine.dispose()
