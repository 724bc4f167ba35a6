"""Session fixtures every suite shares: one PostgreSQL and one S3 server for the whole run.

* ``postgres_server``: a throwaway cluster (Debian's ``postgresql`` binaries, initdb in /tmp,
  :func:`tests.support.postgres.start_postgres`), destroyed at the end of the run. When
  ``BERTH_TEST_POSTGRES_URL`` is set, the server it names is used instead; the tests create
  databases of their own on it (the role needs CREATEDB) and drop them at the end.
* ``pg_databases``: ``pg_databases.create("label")`` makes a new, empty database with a unique
  name and returns its URL, so that every module (or test) starts clean.
* ``s3_server``: SeaweedFS (:func:`tests.support.seaweed.start_seaweed`), one bucket.
* ``server_backends``: what a registry server needs to run on a backend. ``"sqlite-fs"`` is the
  default (SQLite and files under the data dir); ``"pg-s3"`` is a fresh PostgreSQL database
  and a fresh prefix in the S3 bucket, given to ``start_registry`` as ``BERTH_*`` variables.

A server that cannot start skips its tests locally, but fails them in CI (``CI`` set): a broken
CI machine must never turn the suite green.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# pyproject sets no pytest `pythonpath`; make `tests.support` importable under a bare `pytest`.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from sqlalchemy.engine import make_url  # noqa: E402

from tests.support.backends import (  # noqa: E402
    ExternalPostgres,
    PgDatabases,
    Postgres,
    ServerBackends,
    unavailable,
)
from tests.support.postgres import start_postgres  # noqa: E402
from tests.support.seaweed import SeaweedS3, start_seaweed  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    external = os.environ.get("BERTH_TEST_POSTGRES_URL", "")
    if external:
        yield ExternalPostgres(external)
        return
    try:
        server = start_postgres()
    except Exception as exc:  # initdb missing, or the cluster did not come up
        unavailable(f"PostgreSQL did not start: {exc}")
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def pg_databases(postgres_server: Postgres) -> Iterator[PgDatabases]:
    if isinstance(postgres_server, ExternalPostgres):
        maintenance = make_url(postgres_server.base_url).database or "postgres"
        databases = PgDatabases(postgres_server, maintenance, drop_at_end=True)
    else:
        databases = PgDatabases(postgres_server, "berth", drop_at_end=False)
    try:
        yield databases
    finally:
        if databases.drop_at_end:
            databases.drop_all()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3]:
    try:
        server = start_seaweed()
    except Exception as exc:  # weed missing, or it did not answer in time
        unavailable(f"SeaweedFS did not start: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def server_backends() -> ServerBackends:
    return ServerBackends()
