"""Catalog and tag order is bytewise on PostgreSQL whatever the database's default collation.

Distribution and SQLite sort names by bytes. A PostgreSQL database created with an ICU or
en_US locale would sort ``a_b`` before ``a-b`` and ``a`` before ``B``, and paginate ``last``
by that order too, unless the name columns collate "C" (models.listed_name, migration 0004).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest
from sqlalchemy import text

from registry.db import migrate
from registry.db.blobs import BlobStore
from registry.db.repositories import RepositoryStore
from registry.db.session import Database
from registry.db.tags import TagStore
from registry.oci.digest import sha256
from tests.db.test_concurrent_writers import finish_blob, manifest, put_tagged
from tests.support.backends import PgDatabases, unavailable

pytestmark = pytest.mark.anyio

# Byte order: '-' < '.' < digits < upper case < '_' < lower case. ICU en-US and glibc en_US
# put '_' before '-', ignore case first, and compare "a-b" and "ab" letters first.
REPOSITORIES = ["acme/a-b", "acme/a.b", "acme/a_b", "acme/ab", "acme/a0", "acme-x/a", "acme/b"]
TAGS = ["a-b", "a.b", "a_b", "ab", "A", "B", "a", "b", "0", "Z_", "z-"]
# ICU rather than glibc's en_US.UTF-8, which Debian does not generate by default.
ICU_EN_US = "LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"


@pytest.fixture
def localized_url(pg_databases: PgDatabases) -> str:
    """A new database whose default collation is ICU en-US, not bytewise, migrated."""
    try:
        url = pg_databases.create("collation-icu", locale_sql=ICU_EN_US)
    except psycopg.Error as exc:
        unavailable(f"cannot create an ICU database (PostgreSQL 15+ with ICU needed): {exc}")
    migrate.upgrade(url)
    return url


@pytest.fixture
async def db(localized_url: str) -> AsyncIterator[Database]:
    database = Database(localized_url)
    yield database
    await database.dispose()


async def test_the_database_default_is_not_bytewise(db: Database) -> None:
    # The control: without the column collation, this database would order names otherwise.
    async with db.read() as session:
        result = await session.execute(
            text("SELECT x FROM unnest(CAST(:names AS text[])) AS x ORDER BY x"), {"names": TAGS}
        )
        assert [row[0] for row in result] != sorted(TAGS)


async def test_catalog_is_bytewise(db: Database) -> None:
    for name in REPOSITORIES:
        await finish_blob(db, name, f"blob of {name}".encode())
    expected = sorted(REPOSITORIES)
    async with db.read() as session:
        repos = RepositoryStore(session)
        assert await repos.catalog(None, None) == expected
        for index, last in enumerate(expected):
            assert await repos.catalog(None, last) == expected[index + 1 :]
            assert await repos.catalog(2, last) == expected[index + 1 : index + 3]


async def test_tags_are_bytewise(db: Database) -> None:
    payload, parsed, blobs = manifest("collation")
    for content in blobs:
        await finish_blob(db, "acme/tagged", content)
    for tag in TAGS:
        await put_tagged(db, "acme/tagged", tag, payload, parsed)
    expected = sorted(TAGS)
    async with db.read() as session:
        repo_id = await RepositoryStore(session).get_id("acme/tagged")
        assert repo_id is not None
        tags = TagStore(session)
        assert await tags.list(repo_id, None, None) == expected
        for index, last in enumerate(expected):
            assert await tags.list(repo_id, None, last) == expected[index + 1 :]
            assert await tags.list(repo_id, 3, last) == expected[index + 1 : index + 4]
        # Prefix lookups (tenant scoping, LIKE 'acme/%') still work on the "C" column.
        assert await BlobStore(session).linked_in_tenant("acme", sha256(blobs[0]))
        assert await BlobStore(session).linked_in_tenant("acm", sha256(blobs[0])) is None
