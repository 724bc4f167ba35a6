"""Health endpoints for load balancers and Kubernetes probes; no authentication.

``/health/live`` answers as long as the process serves requests and touches nothing else: a
liveness probe that failed whenever the database did would restart every replica during an
outage, which fixes nothing. ``/health/ready`` checks that this replica can do its work: the
database answers ``SELECT 1`` and storage answers a read of a small marker object. Failing
readiness only takes the replica out of the load balancer.

Each check has a deadline, so a probe never hangs. Blocking storage calls (boto3 in a worker
thread) cannot be interrupted, so a check that misses its deadline is left to finish in the
background, and the next probe waits on that same check instead of starting another: a store
that stopped answering never piles up threads.

This module talks to the database and the driver directly, unlike the other api/ modules:
reaching them is exactly what it reports on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry import errors
from registry.api.base import services
from registry.context import Services
from registry.storage.driver import PathNotFound

log = logging.getLogger(__name__)

# Seconds each check may take; Kubernetes probes in deploy/ allow a few more.
CHECK_TIMEOUT = 3.0
# A small object every replica reads (and writes when it is missing). Not under blobs/ or
# uploads/, so no blob, upload or expiry sweep ever sees it.
MARKER_PATH = "/_health/marker"
MARKER_CONTENT = b"berth\n"

_in_flight: dict[tuple[int, str], asyncio.Task[None]] = {}


async def live(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    svc = services(request)
    checks: dict[str, Callable[[Services], Awaitable[None]]] = {
        "database": _check_database,
        "storage": _check_storage,
    }
    results = await asyncio.gather(*(_run_check(svc, n, c) for n, c in checks.items()))
    failed = {name: problem for name, problem in zip(checks, results, strict=True) if problem}
    if failed:
        raise errors.UNAVAILABLE(
            failed, message=f"not ready: {', '.join(failed)} unreachable", headers=_NO_STORE
        )
    return JSONResponse({"status": "ok", "checks": dict.fromkeys(checks, "ok")}, headers=_NO_STORE)


_NO_STORE = {"Cache-Control": "no-store"}


async def _check_database(svc: Services) -> None:
    async with svc.db.read() as session:
        await session.execute(text("SELECT 1"))


async def _check_storage(svc: Services) -> None:
    try:
        await svc.driver.get_content(MARKER_PATH)
    except PathNotFound:
        # A fresh store: writing the marker proves write access too.
        await svc.driver.put_content(MARKER_PATH, MARKER_CONTENT)


async def _run_check(
    svc: Services, name: str, check: Callable[[Services], Awaitable[None]]
) -> str | None:
    """None when the check passed within the deadline, else what went wrong."""
    key = (id(svc), name)
    task = _in_flight.get(key)
    if task is None or task.done():
        task = asyncio.ensure_future(check(svc))
        _in_flight[key] = task
        task.add_done_callback(_retrieve)
    done, _ = await asyncio.wait({task}, timeout=CHECK_TIMEOUT)
    if not done:
        log.warning("readiness: %s check timed out after %.0fs", name, CHECK_TIMEOUT)
        return f"no answer within {CHECK_TIMEOUT:.0f}s"
    exc = task.exception()
    if exc is None:
        return None
    log.warning("readiness: %s check failed: %s", name, exc)
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


def _retrieve(task: asyncio.Task[None]) -> None:
    # A check abandoned by its probe still ends; its outcome must not be logged as "never
    # retrieved" by asyncio.
    if not task.cancelled():
        task.exception()
