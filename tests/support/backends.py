"""Backends for the servers tests start: PostgreSQL databases made on demand, S3 prefixes.

The fixtures that start the servers live in tests/conftest.py; this module holds what they hand
out, so that suites can import the types and helpers without importing a conftest.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.support.seaweed import SeaweedS3

BACKENDS = ["sqlite-fs", "pg-s3"]
# An ICU locale whose order differs from bytewise (a_b before a-b, a before B): databases made
# for registry servers use it where the server offers ICU, so the API suites prove the order.
ICU_LOCALE = "en-US"


def unavailable(reason: str) -> NoReturn:
    """Skip locally, fail in CI: a server that cannot start there is a broken environment."""
    if os.environ.get("CI"):
        pytest.fail(f"test prerequisite unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


class Postgres(Protocol):
    def url(self, database: str = "berth") -> str: ...


@dataclass
class ExternalPostgres:
    """The server BERTH_TEST_POSTGRES_URL names; its database serves to connect and create."""

    base_url: str

    def url(self, database: str = "berth") -> str:
        parsed = make_url(self.base_url).set(drivername="postgresql+psycopg", database=database)
        return parsed.render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL as psycopg/libpq takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class PgDatabases:
    """Creates databases with unique names on one server; drops them again if it is not ours."""

    server: Postgres
    maintenance_db: str
    drop_at_end: bool
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    created: list[str] = field(default_factory=list)
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(libpq_url(self.server.url(self.maintenance_db)), autocommit=True)

    def supports_icu(self) -> bool:
        with self._connect() as conn:
            version = conn.info.server_version
            row = conn.execute("SELECT count(*) FROM pg_collation WHERE collprovider = 'i'")
            count = row.fetchone()
        return version >= 150000 and bool(count and count[0])

    def create(self, label: str, *, locale_sql: str = "") -> str:
        """A new empty database; ``locale_sql`` adds e.g. ``LOCALE_PROVIDER icu ...``."""
        slug = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[:30]
        name = f"t{self.run_id}_{next(self._counter)}_{slug}"
        template = " TEMPLATE template0" if locale_sql else ""
        with self._connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"{template} {locale_sql}'.strip())  # type: ignore[arg-type]
        self.created.append(name)
        return self.server.url(name)

    def drop_all(self) -> None:
        with self._connect() as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
        self.created.clear()


@dataclass
class ServerBackends:
    """The environment a ``berth serve`` needs to run on a backend, made fresh per server."""

    _icu: bool | None = None

    def env(self, request: pytest.FixtureRequest, backend: str, label: str) -> dict[str, str]:
        """``BERTH_*`` variables for ``start_registry``; empty for the default sqlite-fs.

        ``request`` is the caller's: the servers start only when a pg-s3 test first asks.
        """
        if backend == "sqlite-fs":
            return {}
        if backend != "pg-s3":
            raise ValueError(f"unknown backend {backend!r}")
        databases: PgDatabases = request.getfixturevalue("pg_databases")
        s3: SeaweedS3 = request.getfixturevalue("s3_server")
        if self._icu is None:
            self._icu = databases.supports_icu()
        locale = f"LOCALE_PROVIDER icu ICU_LOCALE '{ICU_LOCALE}'" if self._icu else ""
        url = databases.create(label, locale_sql=locale)
        return {
            "BERTH_DATABASE__URL": url,
            "BERTH_DATABASE__POOL_SIZE": "5",
            "BERTH_STORAGE__DRIVER": "s3",
            "BERTH_STORAGE__S3__BUCKET": s3.bucket,
            "BERTH_STORAGE__S3__PREFIX": f"{label}-{uuid.uuid4().hex[:8]}",
            "BERTH_STORAGE__S3__ENDPOINT_URL": s3.endpoint_url,
            "BERTH_STORAGE__S3__REGION": s3.region,
            "BERTH_STORAGE__S3__PATH_STYLE": "true",
            "BERTH_STORAGE__S3__ACCESS_KEY_ID": s3.access_key_id,
            "BERTH_STORAGE__S3__SECRET_ACCESS_KEY": s3.secret_access_key,
        }
