"""/health/live and /health/ready on the embedded defaults (SQLite, filesystem storage), and with
a database that cannot be reached. The replicas suite checks them on PostgreSQL and S3."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import DaemonStartError, RegistryProcess, start_registry


def started(data_dir: Path, **env: str) -> Iterator[RegistryProcess]:
    try:
        registry = start_registry(data_dir, extra_env=env)
    except DaemonStartError as exc:
        pytest.fail(f"the Berth registry did not start:\n{exc}", pytrace=False)
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture
def default_registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    yield from started(tmp_path, BERTH_AUTH__MODE="token")


@pytest.fixture
def registry_without_database(tmp_path: Path) -> Iterator[RegistryProcess]:
    # Port 1 on loopback: nothing listens, connections are refused at once. Nothing may touch
    # the database before serving: no migrations, no bootstrap (token auth's first admin).
    yield from started(
        tmp_path,
        BERTH_AUTH__MODE="none",
        BERTH_DATABASE__URL="postgresql+psycopg://x@127.0.0.1:1/x",
        BERTH_DATABASE__MIGRATE_ON_START="false",
    )


def test_live_and_ready_need_no_credentials(default_registry: RegistryProcess) -> None:
    with httpx.Client(base_url=default_registry.url, timeout=10) as c:
        assert c.get("/v2/").status_code == 401  # token auth is on ...
        live = c.get("/health/live")  # ... and the health endpoints need none
        assert live.status_code == 200 and live.json() == {"status": "ok"}
        ready = c.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ok", "checks": {"database": "ok", "storage": "ok"}}
        assert ready.headers["cache-control"] == "no-store"
        # The storage check keeps its marker outside blobs/ and uploads/, and reads it again.
        assert default_registry.data_dir is not None
        assert (default_registry.data_dir / "storage" / "_health" / "marker").is_file()
        assert c.get("/health/ready").status_code == 200
        assert c.head("/health/live").status_code == 200
        assert c.post("/health/ready").status_code == 405


def test_ready_names_an_unreachable_database(registry_without_database: RegistryProcess) -> None:
    with httpx.Client(base_url=registry_without_database.url, timeout=10) as c:
        began = time.monotonic()
        ready = c.get("/health/ready")
        assert time.monotonic() - began < 5
        assert ready.status_code == 503
        error = ready.json()["errors"][0]
        assert error["code"] == "UNAVAILABLE"
        assert set(error["detail"]) == {"database"}, error
        assert "database" in error["message"]
        # Liveness does not care; a request that needs the database says it is unavailable.
        assert c.get("/health/live").status_code == 200
        catalog = c.get("/v2/_catalog")
        assert catalog.status_code == 503
        assert catalog.json()["errors"][0]["code"] == "UNAVAILABLE"
