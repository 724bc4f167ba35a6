"""Expiry of abandoned upload sessions: their rows and their data in storage."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from registry.context import Services
from registry.db.models import utcnow
from registry.db.uploads import UploadStore

log = logging.getLogger(__name__)


async def expire_uploads(svc: Services, now: datetime | None = None) -> int:
    """Remove sessions untouched for ``uploads.expire_after_seconds``; returns how many.

    The row goes first: a PATCH racing with expiry then finds no session (404) instead of
    writing into data that is about to vanish.
    """
    cutoff = (now or utcnow()) - timedelta(seconds=svc.settings.uploads.expire_after_seconds)
    removed = 0
    while True:
        async with svc.db.read() as session:
            expired = await UploadStore(session).expired(cutoff)
        if not expired:
            return removed
        for upload_id, repository in expired:
            async with svc.db.write() as session:
                gone = await UploadStore(session).delete(upload_id)
            if gone:
                await svc.uploads.discard(upload_id)
                removed += 1
                log.info("expired upload %s in %s", upload_id, repository)
